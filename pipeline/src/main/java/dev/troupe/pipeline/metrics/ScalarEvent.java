package dev.troupe.pipeline.metrics;

/**
 * One scalar read back from a TensorBoard event file.
 *
 * @param wallTime seconds since the Unix epoch at which the value was written
 */
public record ScalarEvent(String tag, long step, float value, double wallTime) {}
