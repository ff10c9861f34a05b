package dev.troupe.coordinator;

import dev.troupe.coordinator.ClientProtocol.ControlJob;
import dev.troupe.coordinator.ClientProtocol.ListAllJobs;
import dev.troupe.coordinator.ClientProtocol.Request;
import dev.troupe.coordinator.ClientProtocol.SubmitJob;
import dev.troupe.coordinator.CoordinatorProtocol.Refused;
import dev.troupe.coordinator.CoordinatorProtocol.Reply;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.concurrent.CompletionStage;
import java.util.function.Function;
import org.apache.pekko.actor.AbstractActor;
import org.apache.pekko.actor.Props;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Scheduler;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.pattern.Patterns;

/**
 * The coordinator's door for cluster clients: a classic actor registered with the cluster-client
 * receptionist (which answers the client's {@code sender()}), on every coordinator node. It checks
 * the shared secret, asks the coordinator singleton (through its proxy) and sends the answer back.
 */
public final class ClientGateway extends AbstractActor {
  /** The path clients send to. */
  public static final String PATH = "/user/client-gateway";

  private static final Duration TIMEOUT = Duration.ofSeconds(20);

  private final ActorRef<CoordinatorProtocol.Command> coordinator;
  private final Scheduler scheduler;
  private final byte[] secret;

  private ClientGateway(
      ActorRef<CoordinatorProtocol.Command> coordinator, Scheduler scheduler, String secret) {
    this.coordinator = coordinator;
    this.scheduler = scheduler;
    this.secret = secret.getBytes(StandardCharsets.UTF_8);
  }

  /**
   * The gateway's props: requests are checked against {@code secret} (an empty secret accepts every
   * request; the node says so when it starts).
   */
  public static Props props(
      ActorRef<CoordinatorProtocol.Command> coordinator, Scheduler scheduler, String secret) {
    return Props.create(
        ClientGateway.class, () -> new ClientGateway(coordinator, scheduler, secret));
  }

  @Override
  public Receive createReceive() {
    return receiveBuilder().match(Request.class, this::request).build();
  }

  private void request(Request r) {
    if (secret.length > 0
        && !MessageDigest.isEqual(
            secret, (r.secret() == null ? "" : r.secret()).getBytes(StandardCharsets.UTF_8))) {
      getSender()
          .tell(
              new Refused(
                  "refused: the client's secret does not match the cluster's"
                      + " (troupe.client.secret)"),
              getSelf());
      return;
    }
    Function<ActorRef<Reply>, CoordinatorProtocol.Command> msg =
        switch (r) {
          case SubmitJob s -> to -> new CoordinatorProtocol.Submit(s.name(), s.config(), to);
          case ControlJob c -> to -> new CoordinatorProtocol.Control(c.jobId(), c.action(), to);
          case ClientProtocol.DrainNode d ->
              to -> new CoordinatorProtocol.Drain(d.node(), false, to);
          case ListAllJobs l -> CoordinatorProtocol.ListJobs::new;
        };
    CompletionStage<Object> answer =
        AskPattern.ask(coordinator, msg::apply, TIMEOUT, scheduler)
            .<Object>thenApply(x -> x)
            .exceptionally(
                e ->
                    new Refused(
                        "the coordinator did not answer within "
                            + TIMEOUT.toSeconds()
                            + " s ("
                            + e.getClass().getSimpleName()
                            + ")"));
    Patterns.pipe(answer, getContext().getDispatcher()).to(getSender(), getSelf());
  }
}
