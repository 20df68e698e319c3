package org.flatquant.benchmarks;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.options.CommandLineOptionException;
import org.openjdk.jmh.runner.options.CommandLineOptions;
import org.openjdk.jmh.runner.options.OptionsBuilder;

/**
 * The entry point of {@code benchmarks.jar}: JMH's own command line, plus one rule for the {@code device}
 * parameter. GPU values ({@code cuda}, {@code cuda:N}), whether they come from {@code -p device=...} or from the
 * annotation's default, are checked first; one that cannot run here (no GPU, a library without the CUDA backend, a
 * model the GPU path does not take) is dropped with a line saying why, instead of failing its benchmarks. When
 * nothing is left to run, it says so and exits 0.
 *
 * <p>{@code -h}, {@code -l}, {@code -lp}, {@code -lprof} and {@code -lrf} go to JMH unchanged.
 */
public final class BenchMain {
    /** The default of every {@code device} parameter in this module. */
    static final List<String> DEFAULT_DEVICES = List.of("cpu", "cuda");

    private BenchMain() {
    }

    /**
     * Runs JMH.
     *
     * @param args JMH's command line
     * @throws Exception when JMH fails
     */
    public static void main(String[] args) throws Exception {
        CommandLineOptions cmd;
        try {
            cmd = new CommandLineOptions(args);
        } catch (CommandLineOptionException e) {
            System.err.println("Error parsing command line: " + e.getMessage());
            System.exit(1);
            return;
        }
        if (cmd.shouldHelp() || cmd.shouldList() || cmd.shouldListWithParams() || cmd.shouldListProfilers()
                || cmd.shouldListResultFormats()) {
            org.openjdk.jmh.Main.main(args);
            return;
        }
        Collection<String> asked = cmd.getParameter("device").orElse(DEFAULT_DEVICES);
        List<String> devices = new ArrayList<>();
        for (String d : asked) {
            String why = Bench.isCuda(d) ? Bench.whyNoGpu(d) : null;
            if (why == null) {
                devices.add(d);
            } else {
                System.out.println("# skipping device=" + d + " (benchmarks with a device parameter): " + why);
            }
        }
        if (devices.isEmpty()) {
            System.out.println("# nothing to run: no requested device is usable here");
            return;
        }
        new Runner(new OptionsBuilder().parent(cmd).param("device", devices.toArray(String[]::new)).build()).run();
    }
}
