// Package desktop holds the tests that show stowage's desktop
// notifications on a real notification server (dunst under Xvfb, see
// testenv.StartDesktop) and take screenshots of them; it has no code of
// its own.
package desktop
