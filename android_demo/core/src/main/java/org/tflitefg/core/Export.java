package org.tflitefg.core;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * The deployable model (tflite_fg/export.py): the trained int8 kernels written over the `infer`
 * constants at the offsets the converter recorded, and the metadata with the new sha256. A byte
 * patch, no flatbuffer rebuild; the result can keep training from its `forward` signature.
 */
public final class Export {
    private Export() {}

    public static byte[] patchKernels(byte[] modelBytes, Metadata meta, byte[][] kernels) {
        if (kernels.length != meta.trainable.size())
            throw new IllegalArgumentException("expected " + meta.trainable.size() + " trainable tensors, got " + kernels.length);
        byte[] out = modelBytes.clone();
        for (int t = 0; t < kernels.length; t++) {
            Metadata.Trainable k = meta.trainable.get(t);
            if (kernels[t].length != k.nbytes)
                throw new IllegalArgumentException("trainable tensor " + k.layer + " must have " + k.nbytes + " int8 values, got " + kernels[t].length);
            for (byte b : kernels[t])
                if (b == Byte.MIN_VALUE)
                    throw new IllegalArgumentException("trainable tensor " + k.layer + " holds -128, outside the symmetric int8 range");
            System.arraycopy(kernels[t], 0, out, k.inferOffset, k.nbytes);
        }
        return out;
    }

    /** Writes `path` and `path.json` (each to a temp file, then renamed); the metadata text is the
     *  original's with the new model sha256, as tflite_fg/export.py writes it. */
    public static void exportModel(Path path, byte[] modelBytes, String metadataJson, Metadata meta, byte[][] kernels)
            throws IOException {
        byte[] patched = patchKernels(modelBytes, meta, kernels);
        String key = "\"model_sha256\": \"" + meta.modelSha256 + "\"";
        if (!metadataJson.contains(key)) throw new IllegalArgumentException("metadata text does not hold " + key);
        String json = metadataJson.replace(key, "\"model_sha256\": \"" + Metadata.sha256(patched) + "\"");
        atomicWrite(path, patched);
        atomicWrite(path.resolveSibling(path.getFileName() + ".json"), json.getBytes(StandardCharsets.UTF_8));
    }

    static void atomicWrite(Path path, byte[] data) throws IOException {
        Path dir = path.toAbsolutePath().getParent();
        Files.createDirectories(dir);
        Path tmp = Files.createTempFile(dir, "." + path.getFileName(), ".tmp");
        try {
            Files.write(tmp, data);
            Files.move(tmp, path, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }
}
