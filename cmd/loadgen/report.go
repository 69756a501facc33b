package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// summary is a phase's outcome in one pass: the targets' rates over all
// rounds and their ratio.
type summary struct {
	service, baseline float64
}

func (s summary) ratio() float64 {
	if s.baseline == 0 {
		return 0
	}
	return s.service / s.baseline
}

// pass runs every phase, rounds times per target, baseline and service
// taking turns to go first, and prints each phase as it finishes.
func (b *bench) pass(ctx context.Context, title string) (map[string]summary, error) {
	fmt.Fprintf(b.out, "== %s ==\n", title)
	out := map[string]summary{}
	var targets []driver
	if b.o.baseline {
		targets = append(targets, b.baselineDriver())
	}
	if b.app != nil {
		targets = append(targets, b.appDriver())
	}
	targets = append(targets, b.serviceDriver())
	for _, phase := range b.o.phases {
		var runs []result
		for round := range b.o.rounds {
			for k := range targets {
				d := targets[(k+round)%len(targets)]
				profile := ""
				if b.o.cpuProfile != "" && round == 0 && d.name == targetService && phase == b.o.profPhase && !b.profiled {
					profile, b.profiled = b.o.cpuProfile, true
				}
				r, err := b.runOnce(ctx, phase, d, b.o.rate, profile)
				if err != nil {
					return nil, fmt.Errorf("%s, %s: %w", phase, d.name, err)
				}
				b.fastest = max(b.fastest, r.rate())
				runs = append(runs, r)
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		svc, base := merge(runs, targetService), merge(runs, targetBaseline)
		s := summary{service: svc.rate(), baseline: base.rate()}
		out[phase] = s
		b.printPhase(phase, runs, len(targets))

		if b.o.half && b.o.rate == 0 && svc.rate() > 0 {
			half := svc.rate() / 2
			var slow []result
			for _, d := range targets {
				r, err := b.runOnce(ctx, phase, d, half, "")
				if err != nil {
					return nil, fmt.Errorf("%s at %.0f/s, %s: %w", phase, half, d.name, err)
				}
				slow = append(slow, r)
			}
			fmt.Fprintf(b.out, "%s at a fixed %.0f/s, half the service's peak (latency counted from when each request was due):\n", phase, half)
			b.printTable(slow)
		}
		fmt.Fprintln(b.out)
	}
	return out, nil
}

// merge adds up a target's runs of one phase.
func merge(runs []result, target string) result {
	var m result
	for _, r := range runs {
		if r.target != target {
			continue
		}
		m.phase, m.target = r.phase, r.target
		m.ops += r.ops
		m.errs += r.errs
		m.elapsed += r.elapsed
		m.lat = append(m.lat, r.lat...)
		m.svcCPU += r.svcCPU
		m.pgCPU += r.pgCPU
		m.genCPU += r.genCPU
		m.allCPU += r.allCPU
		m.rssKB = max(m.rssKB, r.rssKB)
		m.hot = m.hot.add(r.hot)
		m.groups += r.groups
		m.grouped += r.grouped
		m.short = m.short || r.short
		if m.err == nil {
			m.err = r.err
		}
	}
	slices.Sort(m.lat)
	return m
}

// printPhase prints a phase's ratios, service against each baseline (by
// throughput over all rounds, the median of rounds, each round), the CPU
// PostgreSQL spent per operation for each and the share of HOT updates,
// then every target's runs added up. runs hold perRound runs per round, one
// per target.
func (b *bench) printPhase(phase string, runs []result, perRound int) {
	unit := "req/s"
	if phase == phasePairs {
		unit = "pairs/s"
	}
	svc := merge(runs, targetService)
	var rows []result
	for _, name := range []string{targetBaseline, targetApp} {
		base := merge(runs, name)
		if base.ops == 0 {
			continue
		}
		rows = append(rows, base)
		var each []string
		for i := 0; i+perRound <= len(runs); i += perRound {
			var s, o float64
			for _, r := range runs[i : i+perRound] {
				switch r.target {
				case targetService:
					s = r.rate()
				case name:
					o = r.rate()
				}
			}
			if o > 0 {
				each = append(each, fmt.Sprintf("%.2f", s/o))
			}
		}
		fmt.Fprintf(b.out, "%s: service/%s = %.2f, median of rounds %s  (service %.0f %s, %s %.0f %s; rounds %s)\n",
			phase, name, svc.rate()/max(base.rate(), 1e-9), median(each), svc.rate(), unit, name, base.rate(), unit, strings.Join(each, " "))
		if b.admin != nil { // no PostgreSQL with -store sqlite
			fmt.Fprintf(b.out, "%s: PostgreSQL CPU per op, service/%s = %.2f (%.0f / %.0f µs)\n",
				phase, name, svc.perOp(svc.pgCPU)/max(base.perOp(base.pgCPU), 1e-9), svc.perOp(svc.pgCPU), base.perOp(base.pgCPU))
		}
	}
	if len(rows) == 0 {
		fmt.Fprintf(b.out, "%s: service %.0f %s\n", phase, svc.rate(), unit)
	}
	if svc.groups > 0 {
		fmt.Fprintf(b.out, "%s: service's group commit: %.0f groups, %.1f writes per group, %.0f%% of writes grouped\n",
			phase, svc.groups, svc.grouped/svc.groups, 100*svc.grouped/max(float64(svc.ops)*writesPerOp(phase), 1))
	}
	b.printTable(append([]result{svc}, rows...))
}

// printTable prints one line per result: throughput, latency, CPU per
// operation of the service, its Postgres backends and this process, and the
// service's peak RSS.
func (b *bench) printTable(rs []result) {
	tw := tabwriter.NewWriter(b.out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  target\tops\tsecs\tops/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\terrors\tsvc µs/op\tpg µs/op\tloadgen µs/op\tHOT %\tsvc peak RSS MB\tother cores\t")
	for _, r := range rs {
		if r.ops == 0 && r.errs == 0 {
			continue
		}
		svcCPU, rss, hot := "-", "-", "-"
		if r.target != targetBaseline { // the service or the app: a process of its own
			svcCPU = fmt.Sprintf("%.0f", r.perOp(r.svcCPU))
		}
		if r.target != targetBaseline && r.rssKB > 0 {
			rss = fmt.Sprintf("%.1f", float64(r.rssKB)/1024)
		}
		if p := r.hot.percent(); p >= 0 {
			hot = fmt.Sprintf("%.1f", p)
		}
		fmt.Fprintf(tw, "  %s\t%d\t%.1f\t%.0f\t%s\t%s\t%s\t%s\t%d\t%s\t%.0f\t%.0f\t%s\t%s\t%.2f\t\n",
			r.target, r.ops, r.elapsed.Seconds(), r.rate(),
			ms(percentile(r.lat, 0.50)), ms(percentile(r.lat, 0.90)), ms(percentile(r.lat, 0.99)), ms(percentile(r.lat, 1)),
			r.errs, svcCPU, r.perOp(r.pgCPU), r.perOp(r.genCPU), hot, rss, r.otherCores())
	}
	tw.Flush()
	for _, r := range rs {
		if r.err != nil {
			fmt.Fprintf(b.out, "  %s: first error: %v\n", r.target, r.err)
		}
		if r.short {
			fmt.Fprintf(b.out, "  %s: ran out of prepared tickets before the end\n", r.target)
		}
	}
}

// median is the middle of the per-round ratios, less swayed than their
// total by a burst of someone else's work on a shared machine.
func median(ratios []string) string {
	if len(ratios) == 0 {
		return "-"
	}
	sorted := slices.Clone(ratios) // same width, so text order is numeric order
	slices.Sort(sorted)
	if n := len(sorted); n%2 == 0 {
		a, _ := strconv.ParseFloat(sorted[n/2-1], 64)
		c, _ := strconv.ParseFloat(sorted[n/2], 64)
		return fmt.Sprintf("%.2f", (a+c)/2)
	}
	return sorted[len(sorted)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// compareScale prints each phase's throughput with the seeded table against
// the empty one.
func (b *bench) compareScale(empty, seeded map[string]summary) {
	fmt.Fprintln(b.out, "== scale: seeded table against empty table ==")
	tw := tabwriter.NewWriter(b.out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  phase\tservice empty\tservice seeded\tchange\tbaseline empty\tbaseline seeded\tchange\tratio empty\tratio seeded\t")
	for _, p := range b.o.phases {
		e, s := empty[p], seeded[p]
		fmt.Fprintf(tw, "  %s\t%.0f\t%.0f\t%+.1f%%\t%.0f\t%.0f\t%+.1f%%\t%.2f\t%.2f\t\n", p,
			e.service, s.service, change(e.service, s.service),
			e.baseline, s.baseline, change(e.baseline, s.baseline), e.ratio(), s.ratio())
	}
	tw.Flush()
	fmt.Fprintln(b.out)
}

func change(from, to float64) float64 {
	if from == 0 {
		return 0
	}
	return (to - from) / from * 100
}

// writesPerOp is how many store writes one operation of phase makes.
func writesPerOp(phase string) float64 {
	if phase == phasePairs {
		return 2
	}
	return 1
}
