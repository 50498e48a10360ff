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
 * Save and restore a SignSpsa run: the model's sha256, the step, the forward passes and the master
 * weights. Written atomically; a resumed run continues bit-exactly, because every random draw is
 * a function of (seed, step, index, tensor).
 */
public final class Checkpoint {
    static final int MAGIC = 0x54464731;  // "TFG1"

    private Checkpoint() {}

    public static void save(Path path, String modelSha256, SignSpsa trainer) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (DataOutputStream out = new DataOutputStream(bytes)) {
            out.writeInt(MAGIC);
            out.writeUTF(modelSha256);
            out.writeLong(trainer.step());
            out.writeLong(trainer.forwardPasses());
            int[][] master = trainer.master();
            out.writeInt(master.length);
            for (int[] t : master) {
                out.writeInt(t.length);
                for (int v : t) out.writeInt(v);
            }
        }
        Export.atomicWrite(path, bytes.toByteArray());
    }

    /** Restores into `trainer` (built with the same config and model); refuses a checkpoint of another model. */
    public static void restore(Path path, String modelSha256, SignSpsa trainer) throws IOException {
        try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(Files.readAllBytes(path)))) {
            if (in.readInt() != MAGIC) throw new IOException(path + " is not a tflite_fg Java checkpoint");
            String sha = in.readUTF();
            if (!sha.equals(modelSha256)) throw new IOException(path + " belongs to another model (sha256 " + sha + ")");
            long step = in.readLong(), passes = in.readLong();
            int[][] master = new int[in.readInt()][];
            for (int t = 0; t < master.length; t++) {
                master[t] = new int[in.readInt()];
                for (int e = 0; e < master[t].length; e++) master[t][e] = in.readInt();
            }
            if (in.read() != -1) throw new IOException(path + " has trailing bytes: it is corrupt");
            trainer.restore(master, step, passes);
        } catch (EOFException e) {
            throw new IOException(path + " is truncated", e);
        }
    }
}
