/**
 * What the runtime keeps and sends. Built so far: the Kryo serializer for cluster messages ({@link
 * dev.troupe.persistence.KryoSerializer}, bound to {@link dev.troupe.persistence.ClusterMessage} in
 * this module's {@code reference.conf}, Java serialization off), tensors on the wire ({@link
 * dev.troupe.persistence.TensorBytes}) and the journal and snapshot configuration for H2 and
 * PostgreSQL ({@link dev.troupe.persistence.JournalConfig}). Checkpoint manifests for clusters,
 * retention and copies across nodes are not built yet.
 */
package dev.troupe.persistence;
