"""Hand-written findings inside generated reports: the text between the NOTES markers of the old
file survives a regeneration."""
import pathlib

NOTES_BEGIN, NOTES_END = "<!-- NOTES -->", "<!-- /NOTES -->"


def kept_notes(doc: pathlib.Path, placeholder: str) -> str:
    """The NOTES block of ``doc`` (markers included), or one holding ``placeholder``."""
    if doc.exists():
        text = doc.read_text()
        if NOTES_BEGIN in text and NOTES_END in text:
            return text[text.index(NOTES_BEGIN):text.index(NOTES_END) + len(NOTES_END)]
    return f"{NOTES_BEGIN}\n{placeholder}\n{NOTES_END}"
