/**
 * The training benchmark: one configuration (full fine-tuning or LoRA at a precision) timed in this
 * process; {@code troupe bench} runs each in a fresh JVM beside the PyTorch peer.
 */
package dev.troupe.pipeline.bench;
