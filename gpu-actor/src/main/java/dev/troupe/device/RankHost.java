package dev.troupe.device;

import dev.troupe.device.RankProtocol.Applied;
import dev.troupe.device.RankProtocol.Exchange;
import dev.troupe.device.RankProtocol.Half;
import dev.troupe.device.RankProtocol.Prepare;
import dev.troupe.device.RankProtocol.RankFailed;
import dev.troupe.device.RankProtocol.Ready;
import dev.troupe.device.RankProtocol.State;
import dev.troupe.persistence.TensorBytes;
import dev.troupe.pipeline.dist.PipelineQuantCheck;
import dev.troupe.pipeline.dist.Plan;
import dev.troupe.pipeline.dist.StageWorker;
import dev.troupe.pipeline.dist.Transport;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.quant.QuantState;
import dev.troupe.pipeline.safetensors.DType;
import dev.troupe.pipeline.safetensors.TensorData;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorRef;
import org.bytedeco.pytorch.Tensor;

/**
 * One rank of a distributed run held by a device actor: the {@link StageWorker} on a thread of its
 * own (the actor never blocks), and the inbox of tensors from other ranks that the worker's {@link
 * Transport} receives from. Sends go straight to the peer's device actor as {@link Exchange}
 * messages. {@link #release} aborts a receive that waits, so a run whose peer died ends.
 */
final class RankHost {
  private final Prepare prepare;
  private final ExecutorService thread;
  private final ConcurrentHashMap<String, BlockingQueue<TensorBytes>> inbox =
      new ConcurrentHashMap<>();
  private volatile String aborted;
  private final BlockingQueue<Long> kept = new LinkedBlockingQueue<>();
  private StageWorker worker; // touched only on the thread
  private RankProtocol.Apply lastApply; // the last step's second half (on the thread)

  RankHost(Prepare p, DeviceInfo device, PrintStream log) {
    this.prepare = p;
    String name = "troupe-" + device.id() + "-rank-" + p.rank();
    this.thread =
        Executors.newSingleThreadExecutor(
            r -> {
              Thread t = new Thread(r, name);
              t.setDaemon(true);
              return t;
            });
    run(
        () -> {
          Torch.init();
          org.bytedeco.pytorch.global.torch.set_num_threads(device.threads());
          JobConfig job = JobConfig.parse(p.config(), Path.of(p.jobId() + ".conf"));
          if (job.threads() > 0) org.bytedeco.pytorch.global.torch.set_num_threads(job.threads());
          Plan plan = new Plan(p.pp(), p.tp(), p.dp(), p.boundaries());
          worker = new StageWorker(job, plan, p.rank(), transport(), log);
          if (!p.state().isEmpty()) {
            Map<String, TensorData> state = new LinkedHashMap<>();
            p.state().forEach((k, v) -> state.put(k, v.toTensorData()));
            worker.restore(state, p.optimizerStep());
          }
          if (!p.quantization().isEmpty()) worker.restoreQuant(quant(p.quantization(), plan));
          p.driver().tell(new Ready(p.runId(), p.rank(), device.id(), worker.totalSteps()));
        });
  }

  String runId() {
    return prepare.runId();
  }

  void go(RankProtocol.Go g) {
    run(
        () -> {
          StageWorker.Report r = worker.forwardBackward(g.step(), g.lossScale());
          prepare
              .driver()
              .tell(
                  new Half(
                      runId(),
                      r.rank(),
                      r.stage(),
                      r.shard(),
                      r.replica(),
                      r.step(),
                      r.lossSum(),
                      r.tokens(),
                      r.gradSquares(),
                      r.seconds(),
                      r.waitSeconds()));
        });
  }

  void apply(RankProtocol.Apply a) {
    run(
        () -> {
          worker.apply(a.step(), a.clip(), !a.update(), a.lr());
          lastApply = a;
          if (worker.rank().shard() == 0 && worker.rank().replica() == 0) keepCopies(a);
          prepare.driver().tell(new Applied(runId(), prepare.rank(), a.step()));
        });
  }

  /**
   * The first rank of a stage keeps a copy of the stage's state after every step on its own device
   * and on its buddy on another node, and waits until the buddy has it: a step the driver commits
   * then survives the loss of any one node.
   */
  private void keepCopies(RankProtocol.Apply a) {
    Plan plan = new Plan(prepare.pp(), prepare.tp(), prepare.dp(), prepare.boundaries());
    int stage = worker.rank().stage();
    Map<String, TensorBytes> tensors = new LinkedHashMap<>();
    worker.state().forEach((k, v) -> tensors.put(k, TensorBytes.of(v)));
    RankProtocol.Copy copy =
        new RankProtocol.Copy(
            plan.firstLayer(stage),
            plan.endLayer(stage),
            a.step() + 1,
            tensors,
            worker.optimizerStep(),
            a.lossScale(),
            a.growthTracker(),
            worker.quant() == null ? "" : worker.quant().toJson().toString());
    ActorRef<DeviceActor.Command> self = prepare.peers().get(prepare.rank());
    self.tell(new RankProtocol.Keep(runId(), prepare.jobId(), copy, java.util.List.of()));
    for (ActorRef<DeviceActor.Command> buddy : prepare.buddy()) {
      buddy.tell(new RankProtocol.Keep(runId(), prepare.jobId(), copy, java.util.List.of(self)));
      try {
        while (true) {
          Long steps = kept.poll(100, TimeUnit.MILLISECONDS);
          if (steps != null && steps == a.step() + 1) break;
          if (aborted != null) throw new Transport.TransportException(aborted);
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new Transport.TransportException("interrupted");
      }
    }
  }

  /** The buddy has kept the copy of {@code k.steps()} steps. */
  void kept(RankProtocol.Kept k) {
    kept.add(k.steps());
  }

  void evaluate(RankProtocol.Evaluate e) {
    run(
        () -> {
          StageWorker.EvalReport r = worker.evaluate(e.steps());
          prepare
              .driver()
              .tell(
                  new RankProtocol.Evaluated(
                      runId(),
                      prepare.rank(),
                      e.steps(),
                      r.lossSum(),
                      r.tokens(),
                      r.right(),
                      r.scored()));
        });
  }

  void quantMeasure(RankProtocol.QuantMeasure m) {
    run(
        () -> {
          PipelineQuantCheck.Part p = worker.quantMeasure(m.steps());
          prepare
              .driver()
              .tell(
                  new RankProtocol.QuantMeasured(
                      runId(),
                      prepare.rank(),
                      m.steps(),
                      new java.util.ArrayList<>(p.layers()),
                      p.lossSum(),
                      p.tokens(),
                      p.frozenBytes()));
        });
  }

  /**
   * Holds the decided formats; a stage's first rank keeps its copies of the step again, with them
   * (a run restored from the copies holds the layers as decided).
   */
  void quantApply(RankProtocol.QuantApply a) {
    run(
        () -> {
          Plan plan = new Plan(prepare.pp(), prepare.tp(), prepare.dp(), prepare.boundaries());
          PipelineQuantCheck.Part p = worker.quantApply(a.steps(), quant(a.state(), plan));
          boolean leader = worker.rank().shard() == 0 && worker.rank().replica() == 0;
          if (leader && lastApply != null && lastApply.step() + 1 == a.steps()) {
            keepCopies(lastApply);
          }
          prepare
              .driver()
              .tell(
                  new RankProtocol.QuantApplied(
                      runId(),
                      prepare.rank(),
                      a.steps(),
                      p.lossSum(),
                      p.tokens(),
                      p.frozenBytes()));
        });
  }

  private static QuantState quant(String json, Plan plan) throws java.io.IOException {
    return QuantState.fromJson(json, plan.layers(), "the driver's quantization state");
  }

  void collect() {
    run(
        () -> {
          Map<String, TensorBytes> out = new LinkedHashMap<>();
          worker.state().forEach((k, v) -> out.put(k, TensorBytes.of(v)));
          prepare.driver().tell(new State(runId(), prepare.rank(), out, worker.optimizerStep()));
        });
  }

  void exchange(Exchange e) {
    inbox.computeIfAbsent(key(e.from(), e.tag()), k -> new LinkedBlockingQueue<>()).add(e.tensor());
  }

  /** Ends the run here: a waiting receive fails, then the worker is closed on its thread. */
  void release() {
    aborted = "run " + runId() + " was released";
    thread.execute(
        () -> {
          try {
            if (worker != null) worker.close();
          } catch (Exception e) {
            // closing frees native memory only; nothing to report to a run that is over
          }
          worker = null;
        });
    thread.shutdown();
  }

  private interface Task {
    void run() throws Exception;
  }

  /** Runs {@code task} on the rank's thread; a failure is reported to the driver. */
  private void run(Task task) {
    thread.execute(
        () -> {
          try {
            task.run();
          } catch (Throwable e) {
            String reason = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
            int nl = reason.indexOf('\n');
            if (nl >= 0) reason = reason.substring(0, nl);
            prepare.driver().tell(new RankFailed(runId(), prepare.rank(), reason));
          }
        });
  }

  private static String key(int from, String tag) {
    return from + ":" + tag;
  }

  private Transport transport() {
    return new Transport() {
      @Override
      public void send(int to, String tag, Tensor t) {
        ActorRef<DeviceActor.Command> peer = prepare.peers().get(to);
        peer.tell(new Exchange(runId(), prepare.rank(), tag, bytes(t)));
      }

      @Override
      public Tensor receive(int from, String tag) {
        BlockingQueue<TensorBytes> q =
            inbox.computeIfAbsent(key(from, tag), k -> new LinkedBlockingQueue<>());
        try {
          while (true) {
            TensorBytes b = q.poll(100, TimeUnit.MILLISECONDS);
            if (b != null) {
              inbox.remove(key(from, tag), q); // tags are used once
              return Torch.keep(tensor(b));
            }
            if (aborted != null) throw new TransportException(aborted);
          }
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new TransportException("interrupted");
        }
      }
    };
  }

  static TensorBytes bytes(Tensor t) {
    Tensor d = t.detach();
    try {
      ByteBuffer b = Torch.toBytes(d);
      return new TensorBytes(Torch.dtype(d.scalar_type()).name(), Torch.shape(d), b.array());
    } finally {
      d.close();
    }
  }

  static Tensor tensor(TensorBytes b) {
    return Torch.fromBytes(
        ByteBuffer.wrap(b.data()).order(ByteOrder.LITTLE_ENDIAN),
        DType.valueOf(b.dtype()),
        b.shape());
  }
}
