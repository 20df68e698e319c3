package org.flatquant.cli;

import java.io.PrintStream;
import org.flatquant.ProgressListener;

/** A one-line progress bar on stderr, redrawn in place; a new line for each new stage. */
final class ProgressBar implements ProgressListener {
    private static final int WIDTH = 30;
    private final PrintStream err;
    private final long startNanos = System.nanoTime();
    private String stage;
    private int drawnCells = -1;
    private long drawnDone = -1;

    ProgressBar(PrintStream err) {
        this.err = err;
    }

    @Override
    public boolean onProgress(String newStage, long done, long total) {
        if (!newStage.equals(stage)) {
            finish();
            stage = newStage;
            drawnCells = -1;
            drawnDone = -1;
        }
        int cells = total <= 0 ? WIDTH : (int) (WIDTH * Math.min(done, total) / total);
        if (cells == drawnCells && done == drawnDone) {
            return true;
        }
        drawnCells = cells;
        drawnDone = done;
        double seconds = (System.nanoTime() - startNanos) / 1e9;
        err.printf("\r%-10s [%s%s] %d/%d  %.1fs", stage, "#".repeat(cells), ".".repeat(WIDTH - cells), done, total,
                seconds);
        err.flush();
        return true;
    }

    /** Ends the current line, if a bar was drawn. */
    void finish() {
        if (stage != null && drawnDone >= 0) {
            err.println();
            err.flush();
        }
        stage = null;
    }
}
