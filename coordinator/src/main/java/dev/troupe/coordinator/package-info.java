/**
 * The coordinator: cluster singleton, event-sourced job state, planning and elasticity policies,
 * the job control protocol. Nothing lives here yet; the distributed-runtime work fills it.
 */
package dev.troupe.coordinator;
