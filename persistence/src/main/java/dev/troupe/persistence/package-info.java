/**
 * What the runtime keeps and sends. Built so far: the Kryo serializer for cluster messages ({@link
 * dev.troupe.persistence.KryoSerializer}, bound to {@link dev.troupe.persistence.ClusterMessage} in
 * this module's {@code reference.conf}, Java serialization off) and tensors on the wire ({@link
 * dev.troupe.persistence.TensorBytes}). Journal and snapshot configuration (H2, PostgreSQL),
 * checkpoint manifests for clusters, retention and copies across nodes are not built yet.
 */
package dev.troupe.persistence;
