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
        String[] a = args;
        if (args.length == 0 || (args[0].startsWith("-") && !java.util.Set.of("-h", "--help", "-V", "--version")
                .contains(args[0]))) {
            // like the Vert.x launcher: `java -jar app.jar -conf F -instances N` runs the service
            a = new String[args.length + 1];
            a[0] = "run";
            System.arraycopy(args, 0, a, 1, args.length);
        }
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
