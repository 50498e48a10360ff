package org.tflitefg.core;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Save and restore a SignSpsa run: the model's sha256, the step, the forward passes, the master
 * weights and the optimizer state (momentum's history and step count, grad_average's running
 * average, the Adam head's moments and powers), as tflite_fg's checkpoint keeps the estimator and transform state. Written atomically; a
 * resumed run continues bit-exactly, because every random draw is a function of (seed, step, index,
 * tensor) and the rest of the state is saved.
 */
public final class Checkpoint {
    static final int MAGIC = 0x54464733;  // "TFG3"
    static final int MAGIC_V2 = 0x54464732;  // "TFG2": before the Adam head's state (read: a run without it)
    static final int MAGIC_V1 = 0x54464731;  // "TFG1": weights only, before the optimizer state was saved

    private Checkpoint() {}

    public static void save(Path path, String modelSha256, SignSpsa trainer) throws IOException {
        SignSpsa.State s = trainer.state();
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (DataOutputStream out = new DataOutputStream(bytes)) {
            out.writeInt(MAGIC);
            out.writeUTF(modelSha256);
            out.writeLong(s.step);
            out.writeLong(s.forwardPasses);
            out.writeLong(s.stepsSeen);
            writeInts(out, s.master);
            writeInts(out, s.history);
            out.writeBoolean(s.average != null);
            if (s.average != null) {
                out.writeInt(s.average.length);
                for (float[] t : s.average) writeFloats(out, t);
            }
            out.writeBoolean(s.adam != null);
            if (s.adam != null) writeFloats(out, s.adam);
        }
        Export.atomicWrite(path, bytes.toByteArray());
    }

    /** Restores into `trainer` (built with the same config and model); refuses a checkpoint of another model. */
    public static void restore(Path path, String modelSha256, SignSpsa trainer) throws IOException {
        try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(Files.readAllBytes(path)))) {
            int magic = in.readInt();
            if (magic == MAGIC_V1)
                throw new IOException(path + " is an older Java checkpoint (TFG1) without the optimizer state: start the run again");
            if (magic != MAGIC && magic != MAGIC_V2) throw new IOException(path + " is not a tflite_fg Java checkpoint");
            String sha = in.readUTF();
            if (!sha.equals(modelSha256)) throw new IOException(path + " belongs to another model (sha256 " + sha + ")");
            long step = in.readLong(), passes = in.readLong(), stepsSeen = in.readLong();
            int[][] master = readInts(in), history = readInts(in);
            float[][] average = null;
            if (in.readBoolean()) {
                average = new float[in.readInt()][];
                for (int t = 0; t < average.length; t++) average[t] = readFloats(in);
            }
            float[] adam = magic != MAGIC_V2 && in.readBoolean() ? readFloats(in) : null;
            if (in.read() != -1) throw new IOException(path + " has trailing bytes: it is corrupt");
            try {
                trainer.restore(new SignSpsa.State(step, passes, stepsSeen, master, history, average, adam));
            } catch (IllegalArgumentException e) {
                throw new IOException(path + " does not fit this trainer: " + e.getMessage(), e);
            }
        } catch (EOFException e) {
            throw new IOException(path + " is truncated", e);
        } catch (NegativeArraySizeException e) {
            throw new IOException(path + " is corrupt (a negative length)", e);
        }
    }

    private static void writeFloats(DataOutputStream out, float[] values) throws IOException {
        out.writeInt(values.length);
        for (float v : values) out.writeInt(Float.floatToRawIntBits(v));  // the exact bits
    }

    private static float[] readFloats(DataInputStream in) throws IOException {
        float[] out = new float[in.readInt()];
        for (int e = 0; e < out.length; e++) out[e] = Float.intBitsToFloat(in.readInt());
        return out;
    }

    private static void writeInts(DataOutputStream out, int[][] tensors) throws IOException {
        out.writeInt(tensors.length);
        for (int[] t : tensors) {
            out.writeInt(t.length);
            for (int v : t) out.writeInt(v);
        }
    }

    private static int[][] readInts(DataInputStream in) throws IOException {
        int[][] out = new int[in.readInt()][];
        for (int t = 0; t < out.length; t++) {
            out[t] = new int[in.readInt()];
            for (int e = 0; e < out[t].length; e++) out[t][e] = in.readInt();
        }
        return out;
    }
}
