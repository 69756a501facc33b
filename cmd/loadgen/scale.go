package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// runScale compares an empty table with one holding o.scale tokens. Each is
// in its own database with its own service, and the two take turns run by
// run, so that the machine's drift over the minutes of a run, often larger
// than the effect measured, falls on both alike.
func runScale(ctx context.Context, o options, out io.Writer) error {
	empty, err := newBench(ctx, o, out)
	if err != nil {
		return err
	}
	defer empty.close()
	so := o
	so.dbName, so.cpuProfile, so.serverLog = o.dbName+"_seeded", "", ""
	seeded, err := newBench(ctx, so, out)
	if err != nil {
		return err
	}
	defer seeded.close()
	empty.describeMachine()
	fmt.Fprintf(out, "scale: %s empty against %s with %s tokens, taking turns run by run\n",
		o.dbName, so.dbName, thousands(o.scale))
	if err := seeded.seed(ctx, o.scale); err != nil {
		return err
	}

	if err := takeTurns(ctx, o, out, [2]*bench{empty, seeded}, [2]string{"empty", "seeded"},
		[2]string{"empty", thousands(o.scale) + " stored"}, nil); err != nil {
		return err
	}
	fmt.Fprintln(out)
	return seeded.explainList(ctx)
}

// takeTurns runs every phase on the two benches of pair, service (and
// baseline, unless off) taking turns run by run, and prints each target's
// rate on both with the change from the first to the second, in all and by
// round, then every run in full under titles. settle, when set, runs after
// each run, before the next one starts.
func takeTurns(ctx context.Context, o options, out io.Writer, pair [2]*bench, columns, titles [2]string,
	settle func(context.Context, *bench) error) error {
	type slot struct {
		b *bench
		d driver
	}
	var slots []slot
	for _, b := range pair {
		if o.baseline {
			slots = append(slots, slot{b, b.baselineDriver()})
		}
		slots = append(slots, slot{b, b.serviceDriver()})
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  phase\ttarget\t%s\t%s\tchange\tchange by round\t\n", columns[0], columns[1])
	var details []func() // each phase's runs in full, printed after the summary
	for _, phase := range o.phases {
		// Every run, by bench and target, in round order.
		runs := [2]map[string][]result{{}, {}}
		for round := range o.rounds {
			for k := range slots {
				s := slots[(k+round)%len(slots)]
				r, err := s.b.runOnce(ctx, phase, s.d, 0, "")
				if err != nil {
					return fmt.Errorf("%s, %s: %w", phase, s.d.name, err)
				}
				s.b.fastest = max(s.b.fastest, r.rate())
				i := 0
				if s.b == pair[1] {
					i = 1
				}
				if settle != nil {
					if err := settle(ctx, s.b); err != nil {
						return fmt.Errorf("%s: %w", phase, err)
					}
				}
				runs[i][s.d.name] = append(runs[i][s.d.name], r)
			}
		}
		var merged [2][]result // each bench's runs added up, service then baseline
		for _, name := range []string{targetService, targetBaseline} {
			e, s := merge(runs[0][name], name), merge(runs[1][name], name)
			merged[0], merged[1] = append(merged[0], e), append(merged[1], s)
			if len(runs[0][name]) == 0 {
				continue // the baseline is off
			}
			var byRound []string
			for j, r := range runs[0][name] {
				byRound = append(byRound, fmt.Sprintf("%+.1f%%", change(r.rate(), runs[1][name][j].rate())))
			}
			fmt.Fprintf(tw, "  %s\t%s\t%.0f\t%.0f\t%+.1f%%\t%s\t\n", phase, name, e.rate(), s.rate(), change(e.rate(), s.rate()), strings.Join(byRound, " "))
		}
		details = append(details, func() {
			for i, title := range titles {
				fmt.Fprintf(out, "%s, %s, all rounds:\n", phase, title)
				pair[0].printTable(merged[i])
			}
		})
	}
	tw.Flush()
	fmt.Fprintln(out)
	for _, print := range details {
		print()
	}
	return nil
}
