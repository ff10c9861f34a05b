/**
 * Devices and their actors. Built so far: {@code --devices} specs, CPU device discovery (CUDA
 * discovery through JavaCPP's cudart is not built yet and is refused with a message) and the device
 * actor, which describes its device. Stages, forward/backward passes and collectives are not built
 * yet.
 */
package dev.troupe.device;
