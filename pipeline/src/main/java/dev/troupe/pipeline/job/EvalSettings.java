package dev.troupe.pipeline.job;

/**
 * Evaluation on {@code data.eval} ({@code eval { ... }}).
 *
 * @param every optimizer steps between evaluations
 * @param maxNewTokens the most tokens generated per example for the exact-match score
 */
public record EvalSettings(long every, int maxNewTokens) {}
