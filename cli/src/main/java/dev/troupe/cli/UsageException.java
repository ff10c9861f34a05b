package dev.troupe.cli;

/** A command line that cannot be run as given: exit status 2 and one line on stderr. */
final class UsageException extends RuntimeException {
  UsageException(String message) {
    super(message);
  }
}
