package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.troupe.cli.Main;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Artery over TLS, configured as conf/README.md documents it: two node processes with a key store
 * made by {@code keytool} form a cluster, and a client reaches the coordinator over TLS too.
 */
class TlsClusterTest {
  @TempDir Path dir;

  @Test
  void nodesAndClientsTalkOverTls() throws Exception {
    Path store = dir.resolve("troupe.p12");
    Process keytool =
        new ProcessBuilder(
                Path.of(System.getProperty("java.home"), "bin", "keytool").toString(),
                "-genkeypair",
                "-alias",
                "troupe",
                "-keyalg",
                "RSA",
                "-keysize",
                "2048",
                "-validity",
                "2",
                "-dname",
                "CN=troupe-test",
                "-storetype",
                "PKCS12",
                "-keystore",
                store.toString(),
                "-storepass",
                "test-pass",
                "-keypass",
                "test-pass")
            .redirectErrorStream(true)
            .start();
    String keytoolOut = new String(keytool.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertEquals(0, keytool.waitFor(), keytoolOut);

    int p1 = Nodes.freePort();
    int p2 = Nodes.freePort();
    String contact = "127.0.0.1:" + p1;
    Path conf = dir.resolve("tls.conf");
    Files.writeString(
        conf,
        """
        pekko.remote.artery {
          transport = tls-tcp
          ssl.config-ssl-engine {
            key-store = "%1$s"
            trust-store = "%1$s"
            key-store-password = "test-pass"
            key-password = "test-pass"
            trust-store-password = "test-pass"
          }
        }
        troupe.client { contacts = ["%2$s"], secret = "s", timeout = 30s }
        """
            .formatted(store, contact));
    List<Nodes.Node> nodes = new ArrayList<>();
    try {
      Nodes.Node first =
          Nodes.start(dir, "n1", "--port", String.valueOf(p1), "--config", conf.toString());
      nodes.add(first);
      Nodes.await(first, "troupe node up: pekko://troupe@" + contact + " devices=1");
      Nodes.Node second =
          Nodes.start(
              dir,
              "n2",
              "--port",
              String.valueOf(p2),
              "--seeds",
              contact,
              "--roles",
              "worker",
              "--config",
              conf.toString());
      nodes.add(second);
      Nodes.await(first, "troupe node: member up pekko://troupe@127.0.0.1:" + p2);
      Nodes.await(second, "troupe node up: pekko://troupe@127.0.0.1:" + p2 + " devices=1");

      ByteArrayOutputStream out = new ByteArrayOutputStream();
      ByteArrayOutputStream err = new ByteArrayOutputStream();
      int rc =
          Main.run(
              new String[] {"jobs", "--config", conf.toString()},
              new PrintStream(out, true, StandardCharsets.UTF_8),
              new PrintStream(err, true, StandardCharsets.UTF_8));
      assertEquals(0, rc, err.toString(StandardCharsets.UTF_8));
      assertEquals("no jobs", out.toString(StandardCharsets.UTF_8).strip());
      assertEquals(
          0,
          Files.readAllLines(first.stderr()).stream()
              .filter(l -> l.contains("SSLHandshakeException"))
              .count(),
          "no failed handshakes: " + first.report());
    } finally {
      for (Nodes.Node n : nodes.reversed()) n.stop();
    }
  }
}
