package dev.troupe.pipeline.job;

/** The learning-rate schedule after warmup ({@code optimizer.schedule}). */
public enum Schedule {
  /** The learning rate stays at {@code optimizer.lr}. */
  CONSTANT,
  /** The learning rate falls linearly to zero at the last step. */
  LINEAR,
  /** The learning rate follows a half cosine down to zero at the last step. */
  COSINE
}
