package dev.troupe.cli;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigValueFactory;
import dev.troupe.coordinator.ClientGateway;
import dev.troupe.coordinator.Coordinator;
import dev.troupe.coordinator.CoordinatorProtocol;
import dev.troupe.device.DeviceActor;
import dev.troupe.device.DeviceInfo;
import dev.troupe.device.DeviceSpec;
import dev.troupe.device.Devices;
import dev.troupe.persistence.JournalConfig;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.pekko.actor.Address;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.ClusterEvent;
import org.apache.pekko.cluster.client.ClusterClientReceptionist;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.ClusterSingleton;
import org.apache.pekko.cluster.typed.ClusterSingletonSettings;
import org.apache.pekko.cluster.typed.Join;
import org.apache.pekko.cluster.typed.SingletonActor;
import org.apache.pekko.cluster.typed.Subscribe;
import org.apache.pekko.persistence.jdbc.testkit.javadsl.SchemaUtils;

/**
 * {@code troupe node}: one cluster node. It joins the Pekko cluster (Artery TCP, the split-brain
 * resolver on), starts one device actor per device, prints {@code troupe node up: <address>
 * devices=<n>} once it is Up and then one line per membership change, and runs until it is stopped
 * (SIGTERM or ctrl-C), when it leaves the cluster gracefully.
 *
 * <p>Coordinator-role nodes run the coordinator as a cluster singleton (the oldest such node holds
 * it) on the journal of {@code troupe.journal} (an H2 file under {@code --data-dir}, the node's
 * own, or a PostgreSQL database the coordinator nodes share, which failover needs), and a {@link
 * ClientGateway} registered with the cluster-client receptionist. Jobs run on one device each (the
 * 1 × 1 × 1 plan); plans over several devices are not built yet.
 */
final class NodeCommand implements Main.Command {
  /** The name of every Troupe actor system; part of every node address. */
  static final String SYSTEM = "troupe";

  @Override
  public int run(List<String> argv, PrintStream out) throws Exception {
    Args args =
        Args.parse(
            "node",
            argv,
            Set.of(
                "config",
                "host",
                "port",
                "seeds",
                "devices",
                "threads-per-device",
                "roles",
                "data-dir"),
            Set.of());
    Config file = ConfigFactory.empty();
    if (args.has("config")) {
      Path p = args.path("config");
      if (!Files.isRegularFile(p))
        throw new UsageException("node: --config " + p + ": no such file");
      try {
        file = ConfigFactory.parseFile(p.toFile());
      } catch (ConfigException e) {
        throw new UsageException("node: --config " + p + ": " + e.getMessage());
      }
    }
    Config defaults = ConfigFactory.load();
    Config settings = file.withFallback(defaults).resolve();
    NodeSettings s;
    try {
      s = NodeSettings.of(args, settings.getConfig("troupe.node"));
    } catch (ConfigException | IllegalArgumentException e) {
      throw new UsageException("node: " + e.getMessage());
    }
    List<DeviceInfo> devices;
    try {
      devices = Devices.discover(s.devices(), s.threadsPerDevice());
    } catch (IllegalArgumentException e) {
      throw new UsageException("node: --devices " + s.devicesText() + ": " + e.getMessage());
    }
    Path dataDir = Path.of(args.get("data-dir", settings.getString("troupe.node.data-dir")));
    Files.createDirectories(dataDir);
    boolean coordinator = s.roles().contains("coordinator");
    String secret = settings.getString("troupe.client.secret");
    if (coordinator && secret.isEmpty()) {
      System.err.println(
          "troupe node: warning: troupe.client.secret is empty: anyone who reaches this node can"
              + " submit and control jobs");
    }
    Config pekko =
        s.pekkoConfig()
            .withFallback(file)
            .withFallback(journal(settings, dataDir))
            .withFallback(defaults.getConfig("troupe.node-pekko"))
            .withFallback(defaults)
            .resolve();
    AtomicReference<Throwable> failure = new AtomicReference<>();
    ActorSystem<Void> system;
    try {
      system =
          ActorSystem.create(
              guardian(devices, s.seeds().isEmpty(), coordinator, secret, out, failure),
              SYSTEM,
              pekko);
    } catch (RuntimeException e) {
      Throwable root = e;
      while (root.getCause() != null) root = root.getCause();
      throw new IllegalStateException(
          "cannot start the node on "
              + s.host()
              + ":"
              + s.port()
              + ": "
              + Main.describe(root)
              + (root instanceof java.net.BindException ? " (is the port in use?)" : ""),
          e);
    }
    system.getWhenTerminated().toCompletableFuture().join();
    Throwable failed = failure.get();
    if (failed != null) {
      throw new IllegalStateException(
          "the node stopped: " + Main.describe(rootCause(failed)), failed);
    }
    return 0;
  }

  private static Config journal(Config settings, Path dataDir) {
    try {
      return JournalConfig.of(settings.getConfig("troupe.journal"), dataDir);
    } catch (ConfigException | IllegalArgumentException e) {
      throw new UsageException("node: " + e.getMessage());
    }
  }

  private static Throwable rootCause(Throwable e) {
    while (e.getCause() != null && e.getCause() != e) e = e.getCause();
    return e;
  }

  /**
   * Starts the device actors, on coordinator nodes the coordinator singleton (its journal's tables
   * created first) and the client gateway, and reports membership on {@code out}.
   */
  private static Behavior<Void> guardian(
      List<DeviceInfo> devices,
      boolean joinSelf,
      boolean coordinator,
      String secret,
      PrintStream out,
      AtomicReference<Throwable> failure) {
    return Behaviors.setup(
        ctx -> {
          try {
            return start(ctx, devices, joinSelf, coordinator, secret, out);
          } catch (Exception | LinkageError e) {
            failure.set(e); // the guardian stops, the system terminates, run() reports it
            throw e;
          }
        });
  }

  private static Behavior<Void> start(
      org.apache.pekko.actor.typed.javadsl.ActorContext<Void> ctx,
      List<DeviceInfo> devices,
      boolean joinSelf,
      boolean coordinator,
      String secret,
      PrintStream out)
      throws Exception {
    Cluster cluster = Cluster.get(ctx.getSystem());
    Address self = cluster.selfMember().address();
    if (joinSelf) cluster.manager().tell(new Join(self)); // a new cluster of one
    if (coordinator) {
      SchemaUtils.createIfNotExists(ctx.getSystem())
          .toCompletableFuture()
          .get(60, java.util.concurrent.TimeUnit.SECONDS);
    }
    ActorRef<CoordinatorProtocol.Command> proxy =
        ClusterSingleton.get(ctx.getSystem())
            .init(
                SingletonActor.of(Coordinator.create(100), "coordinator")
                    .withSettings(
                        ClusterSingletonSettings.create(ctx.getSystem()).withRole("coordinator")));
    if (coordinator) {
      org.apache.pekko.actor.ActorRef gateway =
          Adapter.actorOf(
              ctx,
              ClientGateway.props(proxy, ctx.getSystem().scheduler(), secret),
              "client-gateway");
      ClusterClientReceptionist.get(Adapter.toClassic(ctx.getSystem())).registerService(gateway);
    }
    for (DeviceInfo d : devices) {
      ctx.spawn(DeviceActor.create(d, self.toString()), "device-" + d.id().replace(':', '-'));
    }
    if (!devices.isEmpty()) {
      leaveAfterDrain(ctx.getSystem(), proxy, self, out);
      preloadTorch();
    }
    ctx.spawn(membership(self, devices.size(), out), "membership");
    return Behaviors.empty();
  }

  /**
   * Loads libtorch on a thread of its own as soon as a node with devices is up, so that the first
   * run sent to its devices, or a run moved to them when another node is lost, does not wait for it
   * (about a second on the 2-core test machines; it is loaded once per process).
   */
  private static void preloadTorch() {
    Thread t =
        new Thread(
            () -> {
              try {
                dev.troupe.pipeline.engine.Torch.init();
              } catch (Throwable e) {
                // a device's run loads it again and reports what went wrong
              }
            },
            "troupe-preload-libtorch");
    t.setDaemon(true);
    t.start();
  }

  /**
   * A node with devices that leaves the cluster (SIGTERM, ctrl-C, a normal leave) first drains
   * itself: the coordinator moves the running plan off its devices at the next step boundary, and
   * the node leaves once that run has ended (at most the phase's timeout, 120 s by default), so its
   * work moves away losing nothing. Nothing waits where no run uses it.
   */
  private static void leaveAfterDrain(
      org.apache.pekko.actor.typed.ActorSystem<?> system,
      ActorRef<CoordinatorProtocol.Command> coordinator,
      Address self,
      PrintStream out) {
    java.time.Duration wait =
        system
            .settings()
            .config()
            .getDuration("pekko.coordinated-shutdown.phases.before-cluster-shutdown.timeout");
    // what the phase leaves after the probe, less a margin to print the outcome
    java.time.Duration waitForRun =
        wait.minusSeconds(15).isNegative()
            ? java.time.Duration.ofSeconds(1)
            : wait.minusSeconds(15);
    org.apache.pekko.actor.CoordinatedShutdown.get(system)
        .addTask(
            org.apache.pekko.actor.CoordinatedShutdown.PhaseBeforeClusterShutdown(),
            "troupe-drain-before-leaving",
            () -> {
              var shutdown = org.apache.pekko.actor.CoordinatedShutdown.get(system);
              if (shutdown
                  .getShutdownReason()
                  .filter(
                      r -> r == org.apache.pekko.actor.CoordinatedShutdown.clusterDowningReason())
                  .isPresent()) {
                // downed: the others already count it gone and re-planned
                return java.util.concurrent.CompletableFuture.completedFuture(
                    org.apache.pekko.Done.getInstance());
              }
              // a short first ask finds out whether the coordinator answers at all (it may be
              // gone too); only then does the node wait for its run to move
              return ask(coordinator, self, false, java.time.Duration.ofSeconds(10), system)
                  .thenCompose(probe -> ask(coordinator, self, true, waitForRun, system))
                  .handle(
                      (reply, failure) -> {
                        out.println(
                            "troupe node: leaving: "
                                + (failure != null
                                    ? "the coordinator did not answer the drain ("
                                        + rootCause(failure).getClass().getSimpleName()
                                        + ")"
                                    : reply instanceof CoordinatorProtocol.Accepted a
                                        ? a.jobId()
                                        : ((CoordinatorProtocol.Refused) reply).reason()));
                        out.flush();
                        return org.apache.pekko.Done.getInstance();
                      });
            });
  }

  private static java.util.concurrent.CompletionStage<CoordinatorProtocol.Reply> ask(
      ActorRef<CoordinatorProtocol.Command> coordinator,
      Address self,
      boolean await,
      java.time.Duration timeout,
      org.apache.pekko.actor.typed.ActorSystem<?> system) {
    return org.apache.pekko.actor.typed.javadsl.AskPattern.ask(
        coordinator,
        to -> new CoordinatorProtocol.Drain(self.toString(), await, to),
        timeout,
        system.scheduler());
  }

  /** Prints the up line for this node and one line per other member coming up or going. */
  private static Behavior<ClusterEvent.MemberEvent> membership(
      Address self, int devices, PrintStream out) {
    return Behaviors.setup(
        ctx -> {
          Cluster.get(ctx.getSystem())
              .subscriptions()
              .tell(Subscribe.create(ctx.getSelf(), ClusterEvent.MemberEvent.class));
          return Behaviors.receiveMessage(
              e -> {
                Address a = e.member().address();
                if (e instanceof ClusterEvent.MemberUp) {
                  out.println(
                      a.equals(self)
                          ? "troupe node up: " + a + " devices=" + devices
                          : "troupe node: member up " + a);
                } else if (e instanceof ClusterEvent.MemberRemoved) {
                  out.println("troupe node: member removed " + a);
                }
                out.flush();
                return Behaviors.same();
              });
        });
  }

  /** The node's settings: flags over the {@code troupe.node} section. */
  record NodeSettings(
      String host,
      int port,
      List<String> seeds,
      DeviceSpec devices,
      String devicesText,
      int threadsPerDevice,
      List<String> roles) {

    static NodeSettings of(Args args, Config c) {
      String host = args.get("host", c.getString("host"));
      int port = args.intValue("port", c.getInt("port"), 0);
      if (port > 65535) throw new IllegalArgumentException("port " + port + " is not a TCP port");
      List<String> seeds =
          args.has("seeds") ? split(args.get("seeds", "")) : c.getStringList("seeds");
      for (String seed : seeds) {
        int colon = seed.lastIndexOf(':');
        if (colon <= 0 || !seed.substring(colon + 1).matches("\\d{1,5}")) {
          throw new IllegalArgumentException("seed '" + seed + "' is not host:port");
        }
      }
      String devicesText = args.get("devices", c.getString("devices"));
      DeviceSpec devices = DeviceSpec.parse(devicesText);
      int threads = args.intValue("threads-per-device", c.getInt("threads-per-device"), 0);
      if (threads == 0) threads = Devices.defaultThreads(devices);
      List<String> roles =
          args.has("roles") ? split(args.get("roles", "")) : c.getStringList("roles");
      return new NodeSettings(host, port, seeds, devices, devicesText, threads, roles);
    }

    private static List<String> split(String text) {
      return Arrays.stream(text.split(",")).map(String::strip).filter(x -> !x.isEmpty()).toList();
    }

    /** Host, port, seeds (this node itself when none) and roles as Pekko settings. */
    Config pekkoConfig() {
      List<String> seedNodes = new ArrayList<>();
      // no seeds: the node joins itself once it is up (its real port, even with --port 0)
      for (String seed : seeds) {
        seedNodes.add("pekko://" + SYSTEM + "@" + seed);
      }
      return ConfigFactory.empty()
          .withValue("pekko.remote.artery.canonical.hostname", ConfigValueFactory.fromAnyRef(host))
          .withValue("pekko.remote.artery.canonical.port", ConfigValueFactory.fromAnyRef(port))
          .withValue("pekko.cluster.seed-nodes", ConfigValueFactory.fromIterable(seedNodes))
          .withValue("pekko.cluster.roles", ConfigValueFactory.fromIterable(roles));
    }
  }
}
