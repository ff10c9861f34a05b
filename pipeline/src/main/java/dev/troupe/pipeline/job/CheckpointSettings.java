package dev.troupe.pipeline.job;

/**
 * Checkpointing ({@code checkpoint { ... }}).
 *
 * @param every optimizer steps between checkpoints
 * @param keep how many of the most recent checkpoints are kept on disk
 */
public record CheckpointSettings(long every, int keep) {}
