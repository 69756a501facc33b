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

	type slot struct {
		b      *bench
		d      driver
		seeded bool
	}
	var slots []slot
	for _, b := range []*bench{empty, seeded} {
		if o.baseline {
			slots = append(slots, slot{b, b.baselineDriver(), b == seeded})
		}
		slots = append(slots, slot{b, b.serviceDriver(), b == seeded})
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  phase\ttarget\tempty\tseeded\tchange\tchange by round\t")
	var details []func() // each phase's runs in full, printed after the summary
	for _, phase := range o.phases {
		var runs [2][]result // empty, seeded
		// Rates by target, empty and seeded, summed over rounds, and the
		// change within each round.
		type acc struct {
			ops     [2]int
			secs    [2]float64
			byRound []string
		}
		accs := map[string]*acc{}
		for round := range o.rounds {
			rates := map[string][2]float64{}
			for k := range slots {
				s := slots[(k+round)%len(slots)]
				r, err := s.b.runOnce(ctx, phase, s.d, 0, "")
				if err != nil {
					return fmt.Errorf("%s, %s: %w", phase, s.d.name, err)
				}
				s.b.fastest = max(s.b.fastest, r.rate())
				i := 0
				if s.seeded {
					i = 1
				}
				a := accs[s.d.name]
				if a == nil {
					a = &acc{}
					accs[s.d.name] = a
				}
				runs[i] = append(runs[i], r)
				a.ops[i] += r.ops
				a.secs[i] += r.elapsed.Seconds()
				pair := rates[s.d.name]
				pair[i] = r.rate()
				rates[s.d.name] = pair
			}
			for name, pair := range rates {
				accs[name].byRound = append(accs[name].byRound, fmt.Sprintf("%+.1f%%", change(pair[0], pair[1])))
			}
		}
		details = append(details, func() {
			for i, title := range []string{"empty", thousands(o.scale) + " stored"} {
				fmt.Fprintf(out, "%s, %s, all rounds:\n", phase, title)
				empty.printTable([]result{merge(runs[i], targetService), merge(runs[i], targetBaseline)})
			}
		})
		for _, name := range []string{targetService, targetBaseline} {
			a := accs[name]
			if a == nil || a.secs[0] == 0 || a.secs[1] == 0 {
				continue
			}
			e, s := float64(a.ops[0])/a.secs[0], float64(a.ops[1])/a.secs[1]
			fmt.Fprintf(tw, "  %s\t%s\t%.0f\t%.0f\t%+.1f%%\t%s\t\n", phase, name, e, s, change(e, s), strings.Join(a.byRound, " "))
		}
	}
	tw.Flush()
	fmt.Fprintln(out)
	for _, print := range details {
		print()
	}
	fmt.Fprintln(out)
	return seeded.explainList(ctx)
}
