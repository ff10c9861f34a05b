package dev.troupe.cli;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigValueFactory;
import dev.troupe.device.DeviceActor;
import dev.troupe.device.DeviceInfo;
import dev.troupe.device.DeviceSpec;
import dev.troupe.device.Devices;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import org.apache.pekko.actor.Address;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.ClusterEvent;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Subscribe;

/**
 * {@code troupe node}: one cluster node. It joins the Pekko cluster (Artery TCP, the split-brain
 * resolver on), starts one device actor per device, prints {@code troupe node up: <address>
 * devices=<n>} once it is Up and then one line per membership change, and runs until it is stopped
 * (SIGTERM or ctrl-C), when it leaves the cluster gracefully.
 *
 * <p>Built so far: membership and device actors. The coordinator, its journal and training across
 * nodes are not built yet.
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
            Set.of("config", "host", "port", "seeds", "devices", "threads-per-device", "roles"),
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
    Config settings = file.withFallback(defaults);
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
    Config pekko =
        s.pekkoConfig()
            .withFallback(file)
            .withFallback(defaults.getConfig("troupe.node-pekko"))
            .withFallback(defaults)
            .resolve();
    ActorSystem<Void> system;
    try {
      system = ActorSystem.create(guardian(devices, out), SYSTEM, pekko);
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
    return 0;
  }

  /** Starts the device actors and reports membership on {@code out}. */
  private static Behavior<Void> guardian(List<DeviceInfo> devices, PrintStream out) {
    return Behaviors.setup(
        ctx -> {
          Cluster cluster = Cluster.get(ctx.getSystem());
          Address self = cluster.selfMember().address();
          for (DeviceInfo d : devices) {
            ctx.spawn(DeviceActor.create(d, self.toString()), "device-" + d.id().replace(':', '-'));
          }
          ctx.spawn(membership(self, devices.size(), out), "membership");
          return Behaviors.empty();
        });
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
      for (String seed : seeds.isEmpty() ? List.of(host + ":" + port) : seeds) {
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
