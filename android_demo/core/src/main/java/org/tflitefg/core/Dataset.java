package org.tflitefg.core;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/** The int8 inputs and labels tools/export_java_data.py writes (data.json + data.bin), and the
 *  training examples of the fixed probe batch NEq velocity watches (selection.probe_indices). */
public final class Dataset {
    public final byte[] xTrain;
    public final int[] yTrain;
    public final byte[] xTest;
    public final int[] yTest;
    public final int[] probe;

    private Dataset(byte[] xTrain, int[] yTrain, byte[] xTest, int[] yTest, int[] probe) {
        this.xTrain = xTrain;
        this.yTrain = yTrain;
        this.xTest = xTest;
        this.yTest = yTest;
        this.probe = probe;
    }

    /** The probe batch's inputs (examples of `exampleSize` bytes). */
    public byte[] probeInputs(int exampleSize) {
        byte[] out = new byte[probe.length * exampleSize];
        for (int i = 0; i < probe.length; i++) System.arraycopy(xTrain, probe[i] * exampleSize, out, i * exampleSize, exampleSize);
        return out;
    }

    public static Dataset read(Path dir) throws IOException {
        return parse(new String(Files.readAllBytes(dir.resolve("data.json")), StandardCharsets.UTF_8),
                     Files.readAllBytes(dir.resolve("data.bin")));
    }

    /** From the two files' contents (e.g. an Android app's bundled assets). */
    @SuppressWarnings("unchecked")
    public static Dataset parse(String headerJson, byte[] bin) throws IOException {
        Map<String, Object> header = (Map<String, Object>) Json.parse(headerJson);
        Map<String, Object> parts = (Map<String, Object>) header.get("parts");
        int[] yTrain = labels(bin, parts, "y_train");
        int[] probe = header.containsKey("probe_indices") ? Metadata.ints(header.get("probe_indices")) : new int[0];
        for (int i : probe)
            if (i < 0 || i >= yTrain.length) throw new IOException("data.json: probe index " + i + " is not a training example");
        return new Dataset(bytes(bin, parts, "x_train"), yTrain, bytes(bin, parts, "x_test"), labels(bin, parts, "y_test"), probe);
    }

    @SuppressWarnings("unchecked")
    private static ByteBuffer part(byte[] bin, Map<String, Object> parts, String name) throws IOException {
        Map<String, Object> p = (Map<String, Object>) parts.get(name);
        if (p == null) throw new IOException("data.json has no part " + name + ": re-export with tools/export_java_data.py");
        int off = ((Number) p.get("offset")).intValue(), n = ((Number) p.get("bytes")).intValue();
        if (off < 0 || off + n > bin.length) throw new IOException("data.bin is truncated (" + name + ")");
        return ByteBuffer.wrap(bin, off, n).slice().order(ByteOrder.LITTLE_ENDIAN);
    }

    private static byte[] bytes(byte[] bin, Map<String, Object> parts, String name) throws IOException {
        ByteBuffer b = part(bin, parts, name);
        byte[] out = new byte[b.remaining()];
        b.get(out);
        return out;
    }

    private static int[] labels(byte[] bin, Map<String, Object> parts, String name) throws IOException {
        ByteBuffer b = part(bin, parts, name);
        int[] out = new int[b.remaining() / 4];
        b.asIntBuffer().get(out);
        return out;
    }
}
