package dev.multifdcolo.app;

import dev.multifdcolo.app.cli.DemoCommand;
import dev.multifdcolo.app.cli.ExportCommand;
import dev.multifdcolo.app.cli.ReceiveCommand;
import dev.multifdcolo.app.cli.SendCommand;
import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.util.concurrent.Callable;

/**
 * The fat jar's entry point. With no arguments it runs the service from {@code conf/};
 * {@code receive} and {@code send} are one-shot tools.
 */
@Command(name = "multifd-colo", mixinStandardHelpOptions = true, version = "multifd-colo 0.1.0",
        description = "QEMU migration receiver with multifd and COLO, and a QEMU-compatible sender.",
        subcommands = {ServiceCommand.class, ReceiveCommand.class, SendCommand.class, ExportCommand.class, DemoCommand.class})
public final class Main implements Callable<Integer> {

    public static void main(String[] args) {
        Logging.configure();
        String[] a = args.length == 0 ? new String[]{"run"} : args;
        int rc = new CommandLine(new Main()).setCaseInsensitiveEnumValuesAllowed(true).execute(a);
        if (rc != 0 || !(a[0].equals("run"))) {
            System.exit(rc);
        }
    }

    @Override
    public Integer call() {
        CommandLine.usage(this, System.out);
        return 0;
    }
}
