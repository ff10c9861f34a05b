package dev.troupe.persistence;

/**
 * Marks a message that may cross the cluster. Pekko's serialization binding in this module's {@code
 * reference.conf} sends every such message through {@link KryoSerializer}; its class must be listed
 * in {@code troupe.serialization.kryo.classes} (Java serialization is off).
 */
public interface ClusterMessage {}
