package dev.troupe.cli;

import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.train.Trainer;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;

/** {@code troupe train JOB.conf}: a fine-tuning job in this process, resumed where it stopped. */
final class TrainCommand implements Main.Command {
  @Override
  public int run(List<String> argv, PrintStream out) throws Exception {
    if (argv.size() != 1 || argv.get(0).startsWith("--")) {
      throw new UsageException("train: usage: troupe train JOB.conf");
    }
    JobConfig job = JobConfig.load(Path.of(argv.get(0)));
    new Trainer(job, out, System.console() != null && out == System.out).run();
    return 0;
  }
}
