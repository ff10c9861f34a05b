/**
 * The device actor (one per GPU or CPU slot), device discovery (CUDA through JavaCPP, else CPU) and
 * collectives. Nothing lives here yet; the distributed-runtime work fills it.
 */
package dev.troupe.device;
