package org.flatquant.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.flatquant.TestSupport;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The shipped task files load whole, with the item counts of the upstream evaluation sets. */
class TaskDataTest {
    private static final Path TASKS = TestSupport.dataDir().resolve("tasks");

    @Test
    void fullSetsHaveTheUpstreamSizes() {
        assertEquals(1838, TaskData.load(Task.PIQA, TASKS, 0).size());
        assertEquals(2376, TaskData.load(Task.ARC_EASY, TASKS, 0).size());
        assertEquals(1172, TaskData.load(Task.ARC_CHALLENGE, TASKS, 0).size());
        assertEquals(10042, TaskData.load(Task.HELLASWAG, TASKS, 0).size());
        assertEquals(1267, TaskData.load(Task.WINOGRANDE, TASKS, 0).size());
        assertEquals(5153, TaskData.load(Task.LAMBADA_OPENAI, TASKS, 0).size());
    }

    @Test
    void limitTakesTheFirstItems() {
        List<TaskItem> all = TaskData.load(Task.ARC_EASY, TASKS, 0);
        List<TaskItem> some = TaskData.load(Task.ARC_EASY, TASKS, 7);
        assertEquals(all.subList(0, 7), some);
        for (int i = 0; i < some.size(); i++) {
            assertEquals(i, some.get(i).index());
        }
    }

    @Test
    void hellaswagActivityNetItemsComeFirst() {
        // The upstream validation file lists the 3243 ActivityNet items, then the 6799 WikiHow ones. The label
        // rule must agree: every ActivityNet item has a non-empty ctx_b, every WikiHow item an empty one.
        List<String> lines = PyText.split(TaskData.read(TASKS.resolve("hellaswag/hellaswag_val_full.txt")), "\n");
        for (int i = 0; i < 10042; i++) {
            String[] parts = TaskData.hellaswagSplit(lines.get(6 * i));
            assertEquals(i >= 3243, parts[2].isEmpty(), "item " + i + ": " + lines.get(6 * i));
            assertEquals(i >= 3243, TaskData.WIKIHOW_LABELS.contains(parts[0]), "item " + i);
        }
    }

    @Test
    void everyItemIsWellFormed() {
        for (Task t : Task.values()) {
            for (TaskItem item : TaskData.load(t, TASKS, 0)) {
                int k = item.requests().size();
                assertEquals(t.isMultipleChoice() ? (t == Task.PIQA || t == Task.WINOGRANDE ? 2 : 4) : 1, k,
                        t.id() + " item " + item.index());
                for (TaskItem.Request r : item.requests()) {
                    assertTrue(r.continuation().startsWith(" "), t.id() + " item " + item.index());
                    assertTrue(PyText.rstrip(r.context()).equals(r.context()), t.id() + " item " + item.index());
                }
            }
        }
    }

    @Test
    void missingAndMalformedFiles(@TempDir Path dir) throws IOException {
        UncheckedIOException missing = assertThrows(UncheckedIOException.class,
                () -> TaskData.load(Task.WINOGRANDE, dir, 0));
        assertTrue(missing.getMessage().contains("winogrande.llmfoundry.jsonl"), missing.getMessage());

        Files.createDirectories(dir.resolve("arc_easy"));
        Files.writeString(dir.resolve("arc_easy/arc_easy.llmfoundry.jsonl"),
                "{\"query\": \"Question: q\", \"choices\": [\"a\", \"b\"], \"gold\": 1}\n{\"query\": 5}\n",
                StandardCharsets.UTF_8);
        assertEquals(1, TaskData.load(Task.ARC_EASY, dir, 1).size());
        IllegalArgumentException bad = assertThrows(IllegalArgumentException.class,
                () -> TaskData.load(Task.ARC_EASY, dir, 0));
        assertTrue(bad.getMessage().contains("item 1"), bad.getMessage());

        Files.writeString(dir.resolve("arc_easy/arc_easy.llmfoundry.jsonl"),
                "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 0}\n", StandardCharsets.UTF_8);
        assertThrows(IllegalArgumentException.class, () -> TaskData.load(Task.ARC_EASY, dir, 0));

        Files.createDirectories(dir.resolve("piqa"));
        Files.writeString(dir.resolve("piqa/valid.jsonl"), "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n",
                StandardCharsets.UTF_8);
        Files.writeString(dir.resolve("piqa/valid-labels.lst"), "2\n", StandardCharsets.UTF_8);
        assertThrows(IllegalArgumentException.class, () -> TaskData.load(Task.PIQA, dir, 0));
    }

    @Test
    void taskNames() {
        assertEquals(Task.LAMBADA_OPENAI, Task.byId(" Lambada_OpenAI "));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Task.byId("mmlu"));
        assertTrue(e.getMessage().contains("hellaswag"), e.getMessage());
    }
}
