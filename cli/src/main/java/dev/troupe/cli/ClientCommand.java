package dev.troupe.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigValueFactory;
import dev.troupe.coordinator.ClientGateway;
import dev.troupe.coordinator.ClientProtocol;
import dev.troupe.coordinator.CoordinatorProtocol;
import dev.troupe.coordinator.Job;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.ActorPath;
import org.apache.pekko.actor.ActorPaths;
import org.apache.pekko.actor.ActorRef;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.cluster.client.ClusterClient;
import org.apache.pekko.cluster.client.ClusterClientSettings;
import org.apache.pekko.pattern.Patterns;

/**
 * The cluster client commands: {@code submit JOB.conf [--follow]}, {@code status [JOB] [--json]},
 * {@code jobs}, {@code pause|resume|cancel JOB}, {@code drain NODE}. Each starts a small actor
 * system, reaches the cluster through Pekko's cluster client (contacts from {@code --contact
 * H:P,H:P} or {@code troupe.client.contacts}), sends one request with the shared secret of {@code
 * troupe.client.secret} (from {@code --config FILE} or the defaults) and prints the answer.
 */
final class ClientCommand implements Main.Command {
  private final String name;

  ClientCommand(String name) {
    this.name = name;
  }

  @Override
  public int run(List<String> argv, PrintStream out) throws Exception {
    List<String> positional = new ArrayList<>();
    List<String> options = new ArrayList<>();
    Set<String> valued = Set.of("contact", "config");
    for (int i = 0; i < argv.size(); i++) {
      String a = argv.get(i);
      if (a.startsWith("--")) {
        options.add(a);
        if (valued.contains(a.substring(2)) && i + 1 < argv.size()) options.add(argv.get(++i));
      } else {
        positional.add(a);
      }
    }
    Set<String> flags =
        switch (name) {
          case "submit" -> Set.of("follow");
          case "status", "jobs" -> Set.of("json");
          default -> Set.of();
        };
    Args args = Args.parse(name, options, valued, flags);
    boolean needsJob = !name.equals("jobs") && !name.equals("status");
    if (positional.size() > 1
        || (needsJob && positional.isEmpty())
        || (name.equals("jobs") && !positional.isEmpty())) {
      throw new UsageException(name + ": usage: troupe " + usage());
    }
    Config config = ConfigFactory.load();
    if (args.has("config")) {
      Path p = args.path("config");
      if (!Files.isRegularFile(p))
        throw new UsageException(name + ": --config " + p + ": no such file");
      try {
        config = ConfigFactory.parseFile(p.toFile()).withFallback(config).resolve();
      } catch (ConfigException e) {
        throw new UsageException(name + ": --config " + p + ": " + e.getMessage());
      }
    }
    String secret = config.getString("troupe.client.secret");
    List<String> contacts =
        args.has("contact")
            ? Arrays.stream(args.get("contact", "").split(",")).map(String::strip).toList()
            : config.getStringList("troupe.client.contacts");
    Duration timeout = config.getDuration("troupe.client.timeout");
    String arg = positional.isEmpty() ? null : positional.get(0);
    ClientProtocol.Request request =
        switch (name) {
          case "submit" -> {
            Path file = Path.of(arg);
            if (!Files.isRegularFile(file))
              throw new UsageException("submit: " + file + ": no such job file");
            String text;
            try {
              text = TrainCommand.render(file); // includes and substitutions resolved here
            } catch (ConfigException e) {
              throw new UsageException("submit: " + file + ": " + e.getMessage());
            }
            yield new ClientProtocol.SubmitJob(secret, file.getFileName().toString(), text);
          }
          case "pause", "resume", "cancel" ->
              new ClientProtocol.ControlJob(
                  secret, arg, CoordinatorProtocol.Action.valueOf(name.toUpperCase(Locale.ROOT)));
          case "drain" -> new ClientProtocol.DrainNode(secret, arg);
          default -> new ClientProtocol.ListAllJobs(secret);
        };
    try (Client client = new Client(contacts, config, timeout)) {
      CoordinatorProtocol.Reply reply = client.send(request);
      if (reply instanceof CoordinatorProtocol.Refused r)
        throw new IllegalStateException(r.reason());
      switch (name) {
        case "submit" -> {
          String id = ((CoordinatorProtocol.Accepted) reply).jobId();
          out.println(id);
          out.flush();
          if (args.has("follow")) return follow(client, secret, id, out);
        }
        case "pause", "resume", "cancel" ->
            out.println(((CoordinatorProtocol.Accepted) reply).jobId() + ": " + name + " done");
        case "drain" -> out.println(((CoordinatorProtocol.Accepted) reply).jobId());
        default -> {
          CoordinatorProtocol.Jobs all = (CoordinatorProtocol.Jobs) reply;
          List<Job> jobs = all.jobs();
          if (arg != null) {
            jobs = jobs.stream().filter(j -> j.id().equals(arg)).toList();
            if (jobs.isEmpty()) {
              throw new IllegalStateException(
                  "unknown job '"
                      + arg
                      + "' (known: "
                      + String.join(", ", all.jobs().stream().map(Job::id).toList())
                      + ")");
            }
          }
          if (args.has("json")) {
            ObjectMapper m = new ObjectMapper();
            for (Job j : jobs) out.println(m.writeValueAsString(json(m, j, all)));
          } else {
            if (jobs.isEmpty()) out.println("no jobs");
            for (Job j : jobs) out.println(line(j));
            if (name.equals("status")) {
              out.println("members: " + all.members().size());
              for (String m : all.members()) out.println("  " + m);
              out.println("devices: " + all.devices().size());
              for (String d : all.devices()) out.println("  " + d);
              if (!all.runningJob().isEmpty()) {
                out.println(
                    "plan: " + all.runningJob() + " runs " + all.plan() + " on " + all.runningOn());
              }
              for (String l : all.planExplanation().split("\n")) {
                if (!l.isBlank()) out.println("  " + l);
              }
              if (!all.lastRecovery().isEmpty()) {
                out.println("last recovery: " + all.lastRecovery());
              }
            }
          }
        }
      }
      return 0;
    }
  }

  private String usage() {
    return switch (name) {
      case "submit" -> "submit JOB.conf [--follow] [--contact H:P,...] [--config FILE]";
      case "status" -> "status [JOB] [--json] [--contact H:P,...] [--config FILE]";
      case "jobs" -> "jobs [--json] [--contact H:P,...] [--config FILE]";
      case "drain" -> "drain NODE [--contact H:P,...] [--config FILE]";
      default -> name + " JOB [--contact H:P,...] [--config FILE]";
    };
  }

  /** Shows the job's progress until it ends; 0 if it completed. */
  private static int follow(Client client, String secret, String id, PrintStream out)
      throws Exception {
    long shown = -1;
    while (true) {
      CoordinatorProtocol.Reply reply = client.send(new ClientProtocol.ListAllJobs(secret));
      if (reply instanceof CoordinatorProtocol.Refused r)
        throw new IllegalStateException(r.reason());
      Job j =
          ((CoordinatorProtocol.Jobs) reply)
              .jobs().stream().filter(x -> x.id().equals(id)).findFirst().orElseThrow();
      if (j.step() != shown || j.state().ended()) {
        out.println(line(j));
        out.flush();
        shown = j.step();
      }
      if (j.state().ended()) return j.state() == dev.troupe.coordinator.JobState.COMPLETED ? 0 : 1;
      Thread.sleep(1000);
    }
  }

  static String line(Job j) {
    StringBuilder sb = new StringBuilder();
    sb.append(j.id()).append("  ").append(j.state());
    if (j.totalSteps() > 0)
      sb.append("  step ").append(j.step()).append('/').append(j.totalSteps());
    if (!Double.isNaN(j.loss())) sb.append(String.format(Locale.ROOT, "  loss %.4f", j.loss()));
    if (!Double.isNaN(j.tokensPerS()) && j.state() == dev.troupe.coordinator.JobState.RUNNING)
      sb.append(String.format(Locale.ROOT, "  %.0f tokens/s", j.tokensPerS()));
    sb.append("  ").append(j.name());
    if (!j.reason().isEmpty()) sb.append("  (").append(j.reason()).append(')');
    return sb.toString();
  }

  private static ObjectNode json(ObjectMapper m, Job j, CoordinatorProtocol.Jobs all) {
    ObjectNode n = m.createObjectNode();
    n.put("job", j.id());
    n.put("name", j.name());
    n.put("state", j.state().name());
    n.put("step", j.step());
    n.put("total_steps", j.totalSteps());
    if (!Double.isNaN(j.loss())) n.put("loss", j.loss());
    if (!Double.isNaN(j.tokensPerS())) n.put("tokens_per_s", j.tokensPerS());
    if (j.id().equals(all.runningJob())) {
      n.put("plan", all.plan());
      n.put("device", all.runningOn());
      n.put("plan_explanation", all.planExplanation());
    }
    if (!all.lastRecovery().isEmpty()) n.put("last_recovery", all.lastRecovery());
    n.put("devices", all.devices().size());
    n.put("members", all.members().size());
    n.put("submitted_at_ms", j.submittedAtMillis());
    if (!j.reason().isEmpty()) n.put("reason", j.reason());
    return n;
  }

  /** A cluster client in a small actor system of its own. */
  private static final class Client implements AutoCloseable {
    private final ActorSystem system;
    private final ActorRef client;
    private final Duration timeout;
    private final List<String> contacts;

    Client(List<String> contacts, Config config, Duration timeout) {
      this.timeout = timeout;
      this.contacts = contacts;
      Set<ActorPath> initial = new HashSet<>();
      for (String c : contacts) {
        if (!c.matches("[^:]+:\\d{1,5}")) {
          throw new UsageException("contact '" + c + "' is not host:port");
        }
        initial.add(ActorPaths.fromString("pekko://troupe@" + c + "/system/receptionist"));
      }
      Config clientConfig =
          ConfigFactory.parseString(
                  """
                  pekko.loglevel = ERROR
                  pekko.actor.provider = remote
                  pekko.remote.artery.canonical.port = 0
                  pekko.remote.log-remote-lifecycle-events = off
                  pekko.cluster.client.reconnect-timeout = off
                  """)
              .withValue(
                  "pekko.remote.artery.canonical.hostname",
                  ConfigValueFactory.fromAnyRef(config.getString("troupe.client.host")))
              .withFallback(config);
      system = ActorSystem.create("troupe-client", clientConfig);
      client =
          system.actorOf(
              ClusterClient.props(
                  ClusterClientSettings.create(system).withInitialContacts(initial)),
              "client");
    }

    CoordinatorProtocol.Reply send(ClientProtocol.Request r) throws Exception {
      try {
        return (CoordinatorProtocol.Reply)
            Patterns.ask(client, new ClusterClient.Send(ClientGateway.PATH, r, false), timeout)
                .toCompletableFuture()
                .get(timeout.toMillis() + 5000, TimeUnit.MILLISECONDS);
      } catch (java.util.concurrent.ExecutionException | java.util.concurrent.TimeoutException e) {
        throw new IllegalStateException(
            "no answer from the cluster at "
                + String.join(", ", contacts)
                + " within "
                + timeout.toSeconds()
                + " s (is a coordinator node running there? see --contact and"
                + " troupe.client.contacts)",
            e);
      }
    }

    @Override
    public void close() throws Exception {
      system.terminate();
      system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
    }
  }
}
