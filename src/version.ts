/**
 * This build's version, as in package.json (a test keeps the two equal). A constant rather than a read of
 * package.json, so that no command pays for a file read at start-up.
 */
export const VERSION = '0.1.0';
