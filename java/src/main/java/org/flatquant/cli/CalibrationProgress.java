package org.flatquant.cli;

import java.io.PrintStream;
import org.flatquant.CalibrationEvent;
import org.flatquant.CalibrationListener;

/**
 * The calibration's progress on stderr: during the "calibrate" stage one line redrawn in place (optimizer step, the
 * layer and epoch in progress, the last epoch's loss and learning rate), and a permanent line with the final loss
 * of each layer; the other stages (tokenize, gptq, save) get the usual {@link ProgressBar}.
 */
final class CalibrationProgress implements CalibrationListener {
    private final PrintStream err;
    private final ProgressBar bar;
    private final long startNanos = System.nanoTime();
    private CalibrationEvent last;
    private double layerSeconds;
    private long done;
    private long total;
    private int drawnLength;

    CalibrationProgress(PrintStream err) {
        this.err = err;
        this.bar = new ProgressBar(err);
    }

    @Override
    public boolean onProgress(String stage, long stepsDone, long stepsTotal) {
        if (!stage.equals("calibrate")) {
            endLine();
            return bar.onProgress(stage, stepsDone, stepsTotal);
        }
        bar.finish();
        done = stepsDone;
        total = stepsTotal;
        draw();
        return true;
    }

    @Override
    public boolean onEpoch(CalibrationEvent e) {
        last = e;
        layerSeconds += e.seconds();
        if (e.epoch() == e.epochCount()) {
            String line = String.format("layer %d/%d  loss %.6e after %d epoch%s (%.1f s)", e.layer() + 1,
                    e.layerCount(), e.mse(), e.epochCount(), e.epochCount() == 1 ? "" : "s", layerSeconds);
            layerSeconds = 0;
            err.print("\r" + pad(line) + "\n");
            drawnLength = 0;
            err.flush();
        } else {
            draw();
        }
        return true;
    }

    private void draw() {
        StringBuilder sb = new StringBuilder("calibrate  step ").append(done).append('/').append(total);
        if (last != null) {
            // The epoch in progress: the one after the last reported, which may start the next layer.
            boolean layerDone = last.epoch() == last.epochCount();
            int layer = layerDone ? last.layer() + 1 : last.layer();
            int epoch = layerDone ? 1 : last.epoch() + 1;
            if (layer < last.layerCount()) {
                sb.append(String.format("  layer %d/%d epoch %d/%d", layer + 1, last.layerCount(), epoch,
                        last.epochCount()));
            }
            sb.append(String.format("  last loss %.4e  lr %.2e", last.mse(), last.lr()));
        }
        sb.append(String.format("  %.1fs", (System.nanoTime() - startNanos) / 1e9));
        String line = sb.toString();
        err.print("\r" + pad(line));
        drawnLength = line.length();
        err.flush();
    }

    /** The line padded with spaces over what the previous redraw left. */
    private String pad(String line) {
        return line.length() >= drawnLength ? line : line + " ".repeat(drawnLength - line.length());
    }

    private void endLine() {
        if (drawnLength > 0) {
            err.println();
            drawnLength = 0;
        }
    }

    /** Ends whatever line is open. */
    void finish() {
        endLine();
        bar.finish();
    }
}
