package dev.troupe.persistence;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigValueFactory;
import java.nio.file.Path;

/**
 * Pekko Persistence settings for the coordinator's journal and snapshots on pekko-persistence-jdbc:
 * an embedded H2 database file under the node's data directory (the default), or PostgreSQL, which
 * every coordinator node can share. The tables are created on first start ({@code
 * SchemaUtils.createIfNotExists}).
 */
public final class JournalConfig {
  private JournalConfig() {}

  /**
   * Journal and snapshot store in the H2 database file {@code dir/journal.mv.db}, as a config
   * overlay to put in front of the node's configuration.
   */
  public static Config h2(Path dir) {
    String url = "jdbc:h2:file:" + dir.toAbsolutePath().resolve("journal") + ";DB_CLOSE_DELAY=-1";
    return jdbc("slick.jdbc.H2Profile$", "org.h2.Driver", url, "sa", "");
  }

  /**
   * Journal and snapshot store in the PostgreSQL database at {@code url} ({@code
   * jdbc:postgresql://host:port/db}).
   */
  public static Config postgres(String url, String user, String password) {
    if (!url.startsWith("jdbc:postgresql:")) {
      throw new IllegalArgumentException(
          "troupe.journal.url '"
              + url
              + "' is not a PostgreSQL JDBC url (jdbc:postgresql://host:port/db)");
    }
    return jdbc("slick.jdbc.PostgresProfile$", "org.postgresql.Driver", url, user, password);
  }

  /**
   * The journal a node's {@code troupe.journal} section asks for: {@code kind = h2} (a file under
   * {@code dataDir}) or {@code kind = postgres} with {@code url}, {@code user}, {@code password}.
   */
  public static Config of(Config journal, Path dataDir) {
    String kind = journal.getString("kind");
    return switch (kind) {
      case "h2" -> h2(dataDir);
      case "postgres" ->
          postgres(
              journal.getString("url"), journal.getString("user"), journal.getString("password"));
      default ->
          throw new IllegalArgumentException(
              "troupe.journal.kind = '" + kind + "' (expected h2 or postgres)");
    };
  }

  private static Config jdbc(
      String profile, String driver, String url, String user, String password) {
    Config slick =
        ConfigFactory.parseString(
                """
                db {
                  connectionPool = disabled
                  keepAliveConnection = on
                  numThreads = 2
                  maxConnections = 2
                  minConnections = 1
                }
                """)
            .withValue("profile", ConfigValueFactory.fromAnyRef(profile))
            .withValue("db.driver", ConfigValueFactory.fromAnyRef(driver))
            .withValue("db.user", ConfigValueFactory.fromAnyRef(user))
            .withValue("db.password", ConfigValueFactory.fromAnyRef(password))
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
