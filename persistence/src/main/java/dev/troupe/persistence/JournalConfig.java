package dev.troupe.persistence;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigValueFactory;
import java.nio.file.Path;

/**
 * Pekko Persistence settings for the coordinator's journal and snapshots on pekko-persistence-jdbc.
 * By default an embedded H2 database file under the node's data directory; the tables are created
 * on first start ({@code SchemaUtils.createIfNotExists}). PostgreSQL is not wired yet.
 */
public final class JournalConfig {
  private JournalConfig() {}

  /**
   * Journal and snapshot store in the H2 database file {@code dir/journal.mv.db}, as a config
   * overlay to put in front of the node's configuration.
   */
  public static Config h2(Path dir) {
    String url = "jdbc:h2:file:" + dir.toAbsolutePath().resolve("journal") + ";DB_CLOSE_DELAY=-1";
    Config slick =
        ConfigFactory.parseString(
                """
                profile = "slick.jdbc.H2Profile$"
                db {
                  driver = "org.h2.Driver"
                  user = "sa"
                  password = ""
                  connectionPool = disabled
                  keepAliveConnection = on
                  numThreads = 2
                  maxConnections = 2
                  minConnections = 1
                }
                """)
            .withValue("db.url", ConfigValueFactory.fromAnyRef(url));
    return ConfigFactory.parseString(
            """
            pekko.persistence {
              journal.plugin = "jdbc-journal"
              snapshot-store.plugin = "jdbc-snapshot-store"
            }
            """)
        .withValue("jdbc-journal.slick", slick.root())
        .withValue("jdbc-snapshot-store.slick", slick.root())
        .withValue("jdbc-read-journal.slick", slick.root());
  }
}
