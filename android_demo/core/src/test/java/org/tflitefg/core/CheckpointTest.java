package org.tflitefg.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import org.junit.Test;

/** Every golden run saved halfway and restored into a fresh trainer continues to the golden weights
 *  of its last step: the checkpoint carries momentum's history, grad_average's running average and
 *  the Adam head's moments. */
public class CheckpointTest {
    @Test
    public void resumedRunsAreBitExact() throws Exception {
        Path dir = Files.createTempDirectory("tfg-ckpt");
        for (Map<String, Object> c : SignSpsaGoldenTest.cases()) {
            int steps = ((Number) c.get("steps")).intValue(), half = steps / 2;
            SignSpsaGoldenTest.Replay replay = new SignSpsaGoldenTest.Replay(c);
            SignSpsa first = SignSpsaGoldenTest.trainer(c);
            for (int s = 0; s < half; s++) replay.step(first);
            Path ckpt = dir.resolve("run.ckpt");
            Checkpoint.save(ckpt, "abc", first);

            SignSpsa resumed = SignSpsaGoldenTest.trainer(c);
            Checkpoint.restore(ckpt, "abc", resumed);
            assertEquals(half, resumed.step());
            for (int s = half; s < steps; s++) {
                replay.step(resumed);
                SignSpsaGoldenTest.assertStep(c, resumed, s);
            }
            replay.finished();
            assertEquals(steps * SignSpsaGoldenTest.passesPerStep(c), resumed.forwardPasses());
        }
    }

    @Test
    public void badCheckpointsAreRefused() throws Exception {
        Map<String, Object> plain = SignSpsaGoldenTest.cases().get(0);  // w8, as the first averaged case
        Map<String, Object> averaged = SignSpsaGoldenTest.cases().stream()
                .filter(c -> SignSpsaGoldenTest.name(c).contains("grad_average")).findFirst().orElseThrow();
        Path dir = Files.createTempDirectory("tfg-ckpt");
        Path ckpt = dir.resolve("run.ckpt");
        SignSpsa trainer = SignSpsaGoldenTest.trainer(plain);
        Checkpoint.save(ckpt, "abc", trainer);
        assertThrows(IOException.class, () -> Checkpoint.restore(ckpt, "another model", trainer));
        byte[] bytes = Files.readAllBytes(ckpt);
        Path cut = dir.resolve("cut.ckpt");
        Files.write(cut, java.util.Arrays.copyOf(bytes, bytes.length - 3));
        assertThrows(IOException.class, () -> Checkpoint.restore(cut, "abc", trainer));
        // a run saved without grad_average does not resume one with it
        IOException e = assertThrows(IOException.class, () -> Checkpoint.restore(ckpt, "abc", SignSpsaGoldenTest.trainer(averaged)));
        assertTrue(e.getMessage(), e.getMessage().contains("grad_average"));
        // nor one with the Adam head
        Map<String, Object> adam = SignSpsaGoldenTest.cases().stream()
                .filter(c -> SignSpsaGoldenTest.name(c).contains("head_optimizer=adam")).findFirst().orElseThrow();
        e = assertThrows(IOException.class, () -> Checkpoint.restore(ckpt, "abc", SignSpsaGoldenTest.trainer(adam)));
        assertTrue(e.getMessage(), e.getMessage().contains("Adam"));
        // TFG2, the format before the Adam head's state: the same bytes without its flag still restore
        Path v2 = dir.resolve("v2.ckpt");
        byte[] two = java.util.Arrays.copyOf(bytes, bytes.length - 1);
        two[3] = '2';
        Files.write(v2, two);
        Checkpoint.restore(v2, "abc", trainer);
        // the format before the optimizer state was saved
        Path old = dir.resolve("old.ckpt");
        bytes[3] = '1';
        Files.write(old, bytes);
        e = assertThrows(IOException.class, () -> Checkpoint.restore(old, "abc", trainer));
        assertTrue(e.getMessage(), e.getMessage().contains("TFG1"));
    }
}
