// Command server is the sign-in token service. Subcommands: serve (the
// default), migrate, keygen, healthcheck and version.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

// version is stamped in at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

type subcommand struct {
	name, summary string
	run           func(ctx context.Context, fs *flag.FlagSet, args []string, getenv func(string) string, stdout, stderr io.Writer) error
	usesEnv       bool
}

var subcommands = []subcommand{
	{"serve", "serve the API (the default)", serve, true},
	{"migrate", "apply database migrations and exit", migrate, true},
	{"keygen", "print a new Ed25519 signing key as PKCS#8 PEM", keygen, false},
	{"healthcheck", "exit 0 if the local server answers its health check", healthcheck, true},
	{"version", "print the version", printVersion, false},
}

// run is the whole program; main only wires it to the process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	// Help alone is the program's usage; with a subcommand, the flag set's.
	if len(args) == 2 && (args[1] == "-h" || args[1] == "-help" || args[1] == "--help") {
		printUsage(stderr)
		return flag.ErrHelp
	}
	rest := args[1:]
	name := "serve"
	if len(rest) > 0 && rest[0] != "" && rest[0][0] != '-' {
		name, rest = rest[0], rest[1:]
	}
	for _, sc := range subcommands {
		if sc.name != name {
			continue
		}
		fs := flag.NewFlagSet(sc.name, flag.ContinueOnError)
		fs.SetOutput(stderr)
		fs.Usage = func() {
			fmt.Fprintf(stderr, "Usage: server %s [flags]\n\n%s.\n", sc.name, capitalize(sc.summary))
			if hasFlags(fs) {
				fmt.Fprintln(stderr, "\nFlags:")
				fs.PrintDefaults()
			}
			if sc.usesEnv {
				fmt.Fprintln(stderr)
				printEnvUsage(stderr)
			}
		}
		return sc.run(ctx, fs, rest, getenv, stdout, stderr)
	}
	printUsage(stderr)
	return fmt.Errorf("unknown subcommand %q", name)
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: server [subcommand] [flags]\n\nA service that issues single-use sign-in tickets.\n\nSubcommands:")
	for _, sc := range subcommands {
		fmt.Fprintf(w, "  %-12s %s\n", sc.name, sc.summary)
	}
	fmt.Fprintln(w, "\nRun 'server SUBCOMMAND -h' for its flags.")
	fmt.Fprintln(w)
	printEnvUsage(w)
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// versionString is the stamped version, or the module version Go recorded.
func versionString() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "devel"
}

func printVersion(_ context.Context, fs *flag.FlagSet, args []string, _ func(string) string, stdout, _ io.Writer) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signin-tokens %s (%s %s/%s)\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
