package dev.troupe.coordinator;

import dev.troupe.device.RankProtocol;

/** What a {@link PlanRun} (the driver of a run over several devices) understands. */
public final class PlanRunProtocol {
  private PlanRunProtocol() {}

  /** A message to the driver. */
  public sealed interface Command {}

  /** A rank's answer (adapted). */
  record FromRank(RankProtocol.FromRank message) implements Command {}

  /** Ends the run after the step in flight, with a checkpoint. */
  public record Stop() implements Command {}

  /** A device of the run is gone: its watch fired, or the receptionist no longer lists it. */
  record DeviceGone(String device) implements Command {}

  /**
   * The coordinator journaled step {@code step} ({@code ok}), or did not (the job no longer runs).
   * The run writes a step's metrics line and goes on only then: a coordinator that is no longer the
   * one (a node that was frozen and woke up after a failover) cannot journal, so its run writes
   * nothing to the job's output.
   */
  public record Committed(long step, boolean ok) implements Command {}

  /** The devices had their time to send their copies of the trainable state (internal). */
  record RecallOver() implements Command {}

  private static final String LOST = "device ";
  private static final String LEFT = " left the cluster";

  /** The reason a run ends for when device {@code path} left the cluster. */
  static String deviceLeft(Object path) {
    return LOST + path + LEFT;
  }

  /** The path of the device a run ended for, from its end reason; null if it ended otherwise. */
  static String lostDevice(String reason) {
    return reason.startsWith(LOST) && reason.endsWith(LEFT)
        ? reason.substring(LOST.length(), reason.length() - LEFT.length())
        : null;
  }
}
