# Two entry points: `make demo` and `make test`. Both create/reuse .venv and fetch the assets.
PY      ?= python3.11
VENV    := .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: demo test java-test venv assets clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "needs $(PY) (set PY=...)"; exit 1; }
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e ".[convert,dev,tasks]"
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

assets: venv
	$(PYTHON) tools/fetch_assets.py

# The main job end to end on real data: convert ResNet-8 with a prototype head for Fashion-MNIST,
# train its int8 weights on-device style with Sign-m-SPSA, export, and print the result.
demo: assets
	$(PYTHON) tools/train.py --out=out/demo --overwrite
	$(PYTHON) tools/evaluate.py --model=out/demo/trained.tflite

test: assets
	$(PYTHON) -m pytest -q tests

# The Java training core of android_demo/ on the JVM (JDK 17, Debian junit4 + libjna-java): plain
# javac/java, no network. The desktop tests run the real TFLite C library (fetched into the asset
# cache from its PyPI wheel) on the default task's converted model and data (tools/export_java_data.py).
JAVA_LIB   ?= /usr/share/java
JAVA_OUT   := build/java
JAVA_DATA  := build/java-data
JUNIT_CP   := $(JAVA_LIB)/junit4.jar:$(JAVA_LIB)/hamcrest-core.jar
JAVAC      := javac --release 17 -Xlint:all -Werror
java_tests  = $(subst /,.,$(patsubst android_demo/$(1)/src/test/java/%.java,%,$(shell find android_demo/$(1)/src/test -name '*Test.java')))

java-test: assets
	@command -v javac >/dev/null && test -f $(JAVA_LIB)/junit4.jar && test -f $(JAVA_LIB)/jna.jar || { echo \
	"needs a JDK 17, junit4 and libjna-java (Debian: apt-get install openjdk-17-jdk-headless junit4 libjna-java)"; exit 1; }
	$(PYTHON) tools/fetch_assets.py --only=tflite_c
	$(PYTHON) tools/export_java_data.py --out=$(JAVA_DATA)
	rm -rf $(JAVA_OUT) && mkdir -p $(JAVA_OUT)
	$(JAVAC) -d $(JAVA_OUT)/core $$(find android_demo/core/src/main -name '*.java')
	$(JAVAC) -cp $(JAVA_OUT)/core:$(JAVA_LIB)/jna.jar -d $(JAVA_OUT)/desktop $$(find android_demo/desktop/src/main -name '*.java')
	$(JAVAC) -cp $(JAVA_OUT)/core:$(JAVA_OUT)/desktop:$(JAVA_LIB)/jna.jar:$(JUNIT_CP) -d $(JAVA_OUT)/test \
		$$(find android_demo/core/src/test android_demo/desktop/src/test -name '*.java')
	java -Dgolden.dir=tests/golden -Djava.data=$(JAVA_DATA) \
		-Dtflite.c=$$($(PYTHON) -c "from tflite_fg import assets; print(assets.cache_dir() / assets.TFLITE_C_LIB)") \
		-cp $(JAVA_OUT)/core:$(JAVA_OUT)/desktop:$(JAVA_OUT)/test:$(JAVA_LIB)/jna.jar:$(JUNIT_CP) \
		org.junit.runner.JUnitCore $(call java_tests,core) $(call java_tests,desktop)

clean:
	rm -rf out .pytest_cache $(JAVA_OUT)
