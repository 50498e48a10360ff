package org.tflitefg.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import org.junit.Test;

/** A run saved after 3 steps and restored into a fresh trainer continues to the golden weights of step 6. */
public class CheckpointTest {
    @Test
    @SuppressWarnings("unchecked")
    public void resumedRunIsBitExact() throws Exception {
        Map<String, Object> c = SignSpsaGoldenTest.cases().get(1);  // w16
        byte[][] initial = SignSpsaGoldenTest.int8(SignSpsaGoldenTest.tensors(c.get("initial")));
        List<Object> lrs = (List<Object>) c.get("lr");
        double[] lr = {((Number) lrs.get(0)).doubleValue(), ((Number) lrs.get(1)).doubleValue()};
        long seed = ((Number) c.get("seed")).longValue();
        int m = ((Number) c.get("m")).intValue();
        double eps = ((Number) c.get("eps_lsb")).doubleValue();
        List<Map<String, Object>> calls = (List<Map<String, Object>>) c.get("calls");
        int[] next = {0};
        SignSpsa.Loss replay = k -> ((Number) calls.get(next[0]++).get("loss")).doubleValue();

        SignSpsa first = new SignSpsa(seed, m, eps, lr, 16, initial);
        for (int s = 0; s < 3; s++) first.step(replay);
        Path dir = Files.createTempDirectory("tfg-ckpt");
        Path ckpt = dir.resolve("run.ckpt");
        Checkpoint.save(ckpt, "abc", first);

        SignSpsa resumed = new SignSpsa(seed, m, eps, lr, 16, initial);
        Checkpoint.restore(ckpt, "abc", resumed);
        assertEquals(3, resumed.step());
        for (int s = 0; s < 3; s++) resumed.step(replay);
        List<Map<String, Object>> after = (List<Map<String, Object>>) c.get("after_step");
        int[][] want = SignSpsaGoldenTest.tensors(after.get(5).get("master"));
        int[][] got = resumed.master();
        for (int t = 0; t < want.length; t++) assertArrayEquals(want[t], got[t]);
        assertEquals(6L * 2 * m, resumed.forwardPasses());

        assertThrows(IOException.class, () -> Checkpoint.restore(ckpt, "another model", resumed));
        byte[] bytes = Files.readAllBytes(ckpt);
        Path cut = dir.resolve("cut.ckpt");
        Files.write(cut, java.util.Arrays.copyOf(bytes, bytes.length - 3));
        assertThrows(IOException.class, () -> Checkpoint.restore(cut, "abc", resumed));
    }
}
