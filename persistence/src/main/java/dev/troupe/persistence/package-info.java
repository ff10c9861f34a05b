/**
 * What the runtime keeps and sends: the Kryo serializer for cluster messages, journal and snapshot
 * configuration (H2, PostgreSQL), checkpoint manifests, retention and copies across nodes. Nothing
 * lives here yet; the distributed-runtime work fills it.
 */
package dev.troupe.persistence;
