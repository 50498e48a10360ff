package org.tflitefg.core;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** The sidecar `<model>.tflite.json` of tflite_fg/metadata.py: what the runtime needs to train the graph. */
public final class Metadata {
    public static final String FORMAT = "tflite_fg/1";

    /** One trainable kernel: its `forward` input name, op, native shape, Δw and where `infer` stores it. */
    public static final class Trainable {
        public final String layer;
        public final String inputName;
        public final String op;
        public final int[] shape;
        public final double scale;
        public final int inferOffset;
        public final int nbytes;

        Trainable(Map<String, Object> m) {
            layer = (String) m.get("layer");
            inputName = (String) m.get("input_name");
            op = (String) m.get("op");
            shape = ints(m.get("shape"));
            scale = ((Number) m.get("scale")).doubleValue();
            inferOffset = ((Number) m.get("infer_offset")).intValue();
            nbytes = ((Number) m.get("nbytes")).intValue();
        }

        public int size() {
            int n = 1;
            for (int d : shape) n *= d;
            return n;
        }
    }

    public final String modelSha256;
    public final String inputName;
    public final int[] inputShape;
    public final double inputScale;
    public final int inputZeroPoint;
    public final String outputName;
    public final double outputScale;
    public final int outputZeroPoint;
    public final int numClasses;
    public final List<Trainable> trainable = new ArrayList<>();

    @SuppressWarnings("unchecked")
    private Metadata(Map<String, Object> m) {
        if (!FORMAT.equals(m.get("format")))
            throw new IllegalArgumentException("metadata format " + m.get("format") + " is not " + FORMAT + "; reconvert the model");
        modelSha256 = (String) m.get("model_sha256");
        inputName = (String) m.get("input_name");
        inputShape = ints(m.get("input_shape"));
        inputScale = ((Number) m.get("input_scale")).doubleValue();
        inputZeroPoint = ((Number) m.get("input_zero_point")).intValue();
        outputName = (String) m.get("output_name");
        outputScale = ((Number) m.get("output_scale")).doubleValue();
        outputZeroPoint = ((Number) m.get("output_zero_point")).intValue();
        numClasses = ((Number) m.get("num_classes")).intValue();
        for (Object t : (List<Object>) m.get("trainable")) trainable.add(new Trainable((Map<String, Object>) t));
    }

    @SuppressWarnings("unchecked")
    public static int[] ints(Object list) {
        List<Object> l = (List<Object>) list;
        int[] out = new int[l.size()];
        for (int i = 0; i < out.length; i++) out[i] = ((Number) l.get(i)).intValue();
        return out;
    }

    @SuppressWarnings("unchecked")
    public static Metadata parse(String json) {
        return new Metadata((Map<String, Object>) Json.parse(json));
    }

    /** Reads `<model>.json` and checks that it belongs to these model bytes (sha256), as FgModel does. */
    public static Metadata read(Path model, byte[] modelBytes) throws IOException {
        Path json = model.resolveSibling(model.getFileName() + ".json");
        if (!Files.exists(json))
            throw new IOException(json + " not found: a tflite_fg model needs its metadata beside it (python tools/convert.py)");
        Metadata meta = parse(new String(Files.readAllBytes(json), StandardCharsets.UTF_8));
        if (!meta.modelSha256.equals(sha256(modelBytes)))
            throw new IOException(model + " does not match its metadata (sha256 differs): reconvert or restore the pair");
        return meta;
    }

    /** The trainable kernels as `infer` stores them (conversion or the last export). */
    public byte[][] initialKernels(byte[] modelBytes) {
        byte[][] out = new byte[trainable.size()][];
        for (int t = 0; t < out.length; t++) {
            Trainable k = trainable.get(t);
            if (k.nbytes != k.size() || k.inferOffset + k.nbytes > modelBytes.length)
                throw new IllegalArgumentException("kernel " + k.layer + " lies outside the model file: it is truncated");
            out[t] = new byte[k.nbytes];
            System.arraycopy(modelBytes, k.inferOffset, out[t], 0, k.nbytes);
        }
        return out;
    }

    /** Δw of each trainable kernel, metadata order. */
    public double[] scales() {
        double[] out = new double[trainable.size()];
        for (int t = 0; t < out.length; t++) out[t] = trainable.get(t).scale;
        return out;
    }

    public int inputSize() {
        int n = 1;
        for (int d : inputShape) n *= d;
        return n;
    }

    /** Lower-case hex sha256, as the metadata records it. */
    public static String sha256(byte[] data) {
        try {
            StringBuilder b = new StringBuilder();
            for (byte x : MessageDigest.getInstance("SHA-256").digest(data)) b.append(String.format("%02x", x & 0xff));
            return b.toString();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
