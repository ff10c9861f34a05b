/**
 * Frozen base weights held quantized (INT8 per output channel, INT4 and NF4 group-wise), the
 * quantization-error measurement and the pure policy that changes a layer's precision.
 */
package dev.troupe.pipeline.quant;
