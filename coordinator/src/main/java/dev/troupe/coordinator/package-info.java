/**
 * The coordinator. Built so far: the job queue as a pure {@link dev.troupe.coordinator.JobBook}
 * (one job at a time, the rest in submission order; pause, resume, cancel) and the event-sourced
 * {@link dev.troupe.coordinator.Coordinator} that journals its events on pekko-persistence-jdbc
 * with snapshots. Not built yet: running the cluster singleton, planning, executing jobs on device
 * actors, elasticity policies and the cluster-client protocol.
 */
package dev.troupe.coordinator;
