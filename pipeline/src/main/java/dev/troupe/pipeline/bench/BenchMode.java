package dev.troupe.pipeline.bench;

import dev.troupe.pipeline.engine.ComputeDtype;
import dev.troupe.pipeline.quant.QuantFormat;
import java.util.Locale;

/** A benchmark configuration: what is trained, in which compute dtype, over which base. */
public enum BenchMode {
  /** Every weight trained, FP32, AdamW: the baseline. */
  FULL_FP32(true, ComputeDtype.FP32, QuantFormat.NONE),
  LORA_FP32(false, ComputeDtype.FP32, QuantFormat.NONE),
  LORA_BF16(false, ComputeDtype.BF16, QuantFormat.NONE),
  /** fp16 compute with dynamic loss scaling (initial scale 65536). */
  LORA_FP16(false, ComputeDtype.FP16, QuantFormat.NONE),
  /** INT8 base (per output channel), bf16 compute. */
  LORA_INT8(false, ComputeDtype.BF16, QuantFormat.INT8),
  /** 4-bit base as QLoRA has it (NF4, groups of 64), bf16 compute. */
  LORA_INT4(false, ComputeDtype.BF16, QuantFormat.NF4);

  private final boolean full;
  private final ComputeDtype dtype;
  private final QuantFormat base;

  BenchMode(boolean full, ComputeDtype dtype, QuantFormat base) {
    this.full = full;
    this.dtype = dtype;
    this.base = base;
  }

  public boolean full() {
    return full;
  }

  public ComputeDtype dtype() {
    return dtype;
  }

  public QuantFormat base() {
    return base;
  }

  /** {@code full-fp32}, {@code lora-int8}, ... */
  public String label() {
    return name().toLowerCase(Locale.ROOT).replace('_', '-');
  }

  public static BenchMode parse(String text) {
    for (BenchMode m : values()) if (m.label().equals(text)) return m;
    StringBuilder known = new StringBuilder();
    for (BenchMode m : values()) known.append(known.isEmpty() ? "" : ", ").append(m.label());
    throw new IllegalArgumentException("unknown mode '" + text + "' (known: " + known + ")");
  }
}
