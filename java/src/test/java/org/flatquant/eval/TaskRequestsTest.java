package org.flatquant.eval;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;
import org.flatquant.TestSupport;
import org.flatquant.eval.TaskItem.Request;
import org.junit.jupiter.api.Test;

/**
 * Request construction against expectations written by hand from lm-evaluation-harness 0.4.13's own output: the
 * request strings are copied from the {@code arguments} of its logged samples (its {@code simple_evaluate} with
 * {@code log_samples=True} on the first items of data/tasks, through tools/goldens/lm_eval_goldens.py), and the
 * HellaSwag strings from its {@code lm_eval.tasks.hellaswag.utils.preprocess} and {@code process_docs} run on
 * the same text.
 */
class TaskRequestsTest {
    private static final Path TASKS = TestSupport.dataDir().resolve("tasks");

    private static TaskItem first(Task task, int index) {
        return TaskData.load(task, TASKS, index + 1).get(index);
    }

    private static void assertRequests(TaskItem item, String[][] expected) {
        assertEquals(expected.length, item.requests().size());
        for (int i = 0; i < expected.length; i++) {
            assertEquals(new Request(expected[i][0], expected[i][1]), item.requests().get(i), "request " + i);
        }
    }

    @Test
    void piqaFirstItems() {
        String q = "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:";
        TaskItem item = first(Task.PIQA, 0);
        assertRequests(item, new String[][] {
            {q, " Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips,"
                    + " you will also need to supply it with a water bottle and a food dish."},
            {q, " Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans material,"
                    + " you will also need to supply it with a water bottle and a food dish."}});
        assertEquals(0, item.gold());
        // The solution keeps its trailing space and its double space: lm-eval does not touch them.
        assertRequests(first(Task.PIQA, 1), new String[][] {
            {"Question: dresser\nAnswer:", " replace drawer with bobby pin "},
            {"Question: dresser\nAnswer:", " finish, woodgrain with  bobby pin "}});
    }

    @Test
    void arcFirstItems() {
        String q = "Question: Which statement best explains why photosynthesis is the foundation of most food webs?"
                + "\nAnswer:";
        TaskItem item = first(Task.ARC_EASY, 0);
        assertRequests(item, new String[][] {
            {q, " Sunlight is the source of energy for nearly all ecosystems."},
            {q, " Most ecosystems are found on land instead of in water."},
            {q, " Carbon dioxide is more available than other gases."},
            {q, " The producers in all ecosystems are plants."}});
        assertEquals(0, item.gold());
        // acc_norm divides by the choice without the delimiter.
        assertEquals("Sunlight is the source of energy for nearly all ecosystems.", item.choices().get(0));

        String c = "Question: An astronomer observes that a planet rotates faster after a meteorite impact. Which is"
                + " the most likely effect of this increase in rotation?\nAnswer:";
        TaskItem ch = first(Task.ARC_CHALLENGE, 0);
        assertRequests(ch, new String[][] {
            {c, " Planetary density will decrease."},
            {c, " Planetary years will become longer."},
            {c, " Planetary days will become shorter."},
            {c, " Planetary gravity will become stronger."}});
        assertEquals(2, ch.gold());
    }

    @Test
    void hellaswagActivityNetCapitalizesTheFragment() {
        String q = "Roof shingle removal: A man is sitting on a roof. He";
        TaskItem item = first(Task.HELLASWAG, 0);
        assertRequests(item, new String[][] {
            {q, " is using wrap to wrap a pair of skis."},
            {q, " is ripping level tiles off."},
            {q, " is holding a rubik's cube."},
            {q, " starts pulling up roofing on a roof."}});
        assertEquals(3, item.gold());
        assertEquals("Clean and jerk: A lady walks to a barbell. She bends down and grabs the pole. The lady",
                first(Task.HELLASWAG, 1).requests().get(0).context());
    }

    @Test
    void hellaswagOddActivityNetItems() {
        // Item 1692: the fragment starts with a quote, so capitalize() changes nothing.
        assertEquals("Layup drill in basketball: Young men play basketball in an indoor court and \"how to do a spin"
                        + " move in basketball\" overlays the video. \" power dribble",
                first(Task.HELLASWAG, 1692).requests().get(0).context());
        // Item 2346: the context is "." and a quoted title.
        assertEquals("Camel ride: . \" a camel ride - desrt of doha - qatar \"",
                first(Task.HELLASWAG, 2346).requests().get(0).context());
    }

    @Test
    void hellaswagWikiHowItems() {
        TaskItem item = first(Task.HELLASWAG, 3243);
        assertEquals("Personal Care and Style: How to become a fashion consultant. Obtain your high school diploma or"
                + " ged. This job requires a high school diploma or equivalent, so make sure to apply yourself and"
                + " finish school. If your high school offers these classes, take art, design, and sewing to"
                + " familiarize yourself with foundational concepts in fashion.", item.requests().get(0).context());
        assertEquals(" Earn a bachelor's degree in a fashion-related field. Degrees for the fashion industry include"
                + " art, fashion merchandising, and marketing.", item.requests().get(3).continuation());
        assertEquals(3, item.gold());
        // Item 3505: a bracketed span the file kept; lm-eval's preprocess removes it.
        TaskItem br = first(Task.HELLASWAG, 3505);
        assertEquals("Family Life: How to entertain a toddler. Ask the toddler what he or she would like to do"
                + " instead of doing what you would like to do.. Visit a site like to find loads of creative"
                + " activities for toddlers and preschoolers.. Choose small, simple games like candy land or chutes"
                + " and ladders.", br.requests().get(0).context());
        assertEquals(1, br.gold());
    }

    @Test
    void hellaswagPreprocessMatchesLmEval() {
        String[][] cases = {
            {"[header] How to make a liquid into a solid [title] Place a small open container of water in the"
                    + " freezer.",
                " How to make a liquid into a solid. Place a small open container of water in the freezer."},
            {"[substeps] Include your past employment.", " Include your past employment."},
            {"Visit a site like [www.kiddio.org] to find loads.", "Visit a site like to find loads."},
            {"putting [a [your name] right beside", "putting right beside"},
            {"  spaced   text [step] end  ", "spaced  text end"},
            {"text [title].", "text. ."},
            {"Hello\u00a0", "Hello"},
        };
        for (String[] c : cases) {
            assertEquals(c[1], TaskRequests.hellaswagPreprocess(c[0]), c[0]);
        }
    }

    @Test
    void hellaswagSplitRule() {
        assertArrayEquals(new String[] {"Roof shingle removal", "A man is sitting on a roof.", "he"},
                TaskData.hellaswagSplit("Roof shingle removal: A man is sitting on a roof. he"));
        assertArrayEquals(new String[] {"Camel ride", ".", "\" a camel ride - desrt of doha - qatar \""},
                TaskData.hellaswagSplit("Camel ride: . \" a camel ride - desrt of doha - qatar \""));
        assertArrayEquals(new String[] {"Family Life", "Do this. then that", ""},
                TaskData.hellaswagSplit("Family Life: Do this. then that"));
        assertArrayEquals(new String[] {"Archery", "", "a man"}, TaskData.hellaswagSplit("Archery: a man"));
    }

    @Test
    void winograndePartialScoring() {
        TaskItem item = first(Task.WINOGRANDE, 0);
        assertRequests(item, new String[][] {
            {"Sarah was a much better surgeon than Maria so Sarah", " always got the easier cases."},
            {"Sarah was a much better surgeon than Maria so Maria", " always got the easier cases."}});
        assertEquals(1, item.gold());
        assertEquals(0, first(Task.WINOGRANDE, 1).gold());
        // Options that share a prefix ("the blanket" / "the bed") still rebuild both contexts exactly.
        TaskItem shared = first(Task.WINOGRANDE, 2);
        assertEquals("They were worried the wine would ruin the bed and the blanket, but the blanket",
                shared.requests().get(0).context());
        assertEquals("They were worried the wine would ruin the bed and the blanket, but the bed",
                shared.requests().get(1).context());
        assertEquals(" was't ruined.", shared.requests().get(1).continuation());
    }

    @Test
    void lambadaLastWordWithItsSpace() {
        TaskItem item = first(Task.LAMBADA_OPENAI, 0);
        Request r = item.requests().get(0);
        assertTrue(r.context().startsWith("In my palm is a clear stone, and inside it is a small ivory statuette."));
        assertTrue(r.context().endsWith(", his mouth curved in a confident grin, I don't care about"));
        assertEquals(339, r.context().length());
        assertEquals(" signs", r.continuation());
        assertEquals(" Shane", first(Task.LAMBADA_OPENAI, 1).requests().get(0).continuation());
        // Only spaces split: a newline stays inside the last "word", as in lm-eval's text.split(' ').
        TaskItem nl = TaskRequests.lambada(0, new TaskRequests.LambadaDoc("He said:\nhello there\nfriend"));
        assertEquals(new Request("He said:\nhello", " there\nfriend"), nl.requests().get(0));
    }

    @Test
    void winograndeNeedsABlankAndAValidAnswer() {
        assertThrows(IllegalArgumentException.class, () -> TaskRequests.winogrande(0,
                new TaskRequests.WinograndeDoc("no blank here", "a", "b", "1")));
        assertThrows(IllegalArgumentException.class, () -> TaskRequests.winogrande(0,
                new TaskRequests.WinograndeDoc("x _ y", "a", "b", "3")));
        TaskItem w = TaskRequests.winogrande(0, new TaskRequests.WinograndeDoc("I like _   cats. ", "big", "small",
                "2"));
        assertEquals(List.of(new Request("I like big", " cats."), new Request("I like small", " cats.")),
                w.requests());
    }
}
