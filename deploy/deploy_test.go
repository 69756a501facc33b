// Package deploy_test checks the deployment files against the binary they
// deploy: every environment variable they set is one the server reads, every
// subcommand they run exists, probes and health checks hit paths the server
// answers on the port it listens on, and the Kubernetes objects fit together
// (selectors, ports, Secret keys, security settings).
package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// binary is the server, built once for all tests, with what its -h says.
type binary struct {
	path        string
	envVars     map[string]bool // every variable the server reads
	defaultAddr string          // HTTP_ADDR's default
	subcommands []string
}

var (
	buildOnce sync.Once
	built     binary
	buildErr  error
)

// server builds ../cmd/server and reads its -h: the environment table and
// the subcommands, straight from the binary.
func server(t *testing.T) binary {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "signin-tokens-deploy-")
		if err != nil {
			buildErr = err
			return
		}
		built.path = filepath.Join(dir, "server")
		cmd := exec.Command("go", "build", "-o", built.path, "../cmd/server")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.New("go build ../cmd/server: " + err.Error() + "\n" + string(out))
			return
		}
		var stderr bytes.Buffer
		help := exec.Command(built.path, "-h")
		help.Stderr = &stderr
		if err := help.Run(); err != nil {
			buildErr = errors.New("server -h: " + err.Error() + "\n" + stderr.String())
			return
		}
		built.envVars = map[string]bool{}
		section := ""
		for _, line := range strings.Split(stderr.String(), "\n") {
			if !strings.HasPrefix(line, " ") {
				section = line
				continue
			}
			fields := strings.Fields(line)
			if len(fields) == 0 {
				continue
			}
			switch section {
			case "Subcommands:":
				built.subcommands = append(built.subcommands, fields[0])
			case "Environment variables:":
				built.envVars[fields[0]] = true
				if fields[0] == "HTTP_ADDR" && len(fields) > 1 {
					built.defaultAddr = fields[1]
				}
			}
		}
		if len(built.envVars) < 10 || built.defaultAddr == "" || len(built.subcommands) < 5 {
			buildErr = errors.New("server -h: cannot read its variables and subcommands from:\n" + stderr.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// port returns the port of an HTTP_ADDR value.
func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("HTTP_ADDR %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("HTTP_ADDR %q: %v", addr, err)
	}
	return n
}

// The parts of Kubernetes objects the checks read.
type (
	object struct {
		APIVersion string            `yaml:"apiVersion"`
		Kind       string            `yaml:"kind"`
		Metadata   meta              `yaml:"metadata"`
		Spec       yaml.Node         `yaml:"spec"`
		StringData map[string]string `yaml:"stringData"`
		file       string
	}
	meta struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	}
	selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	workloadSpec struct { // Deployment and Job
		Replicas *int     `yaml:"replicas"`
		Selector selector `yaml:"selector"`
		Template struct {
			Metadata meta    `yaml:"metadata"`
			Spec     podSpec `yaml:"spec"`
		} `yaml:"template"`
	}
	podSpec struct {
		AutomountServiceAccountToken *bool           `yaml:"automountServiceAccountToken"`
		SecurityContext              securityContext `yaml:"securityContext"`
		Containers                   []container     `yaml:"containers"`
		Volumes                      []struct {
			Name   string `yaml:"name"`
			Secret *struct {
				SecretName string `yaml:"secretName"`
				Items      []struct {
					Key  string `yaml:"key"`
					Path string `yaml:"path"`
				} `yaml:"items"`
			} `yaml:"secret"`
		} `yaml:"volumes"`
	}
	container struct {
		Name  string   `yaml:"name"`
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		Env []struct {
			Name      string `yaml:"name"`
			Value     string `yaml:"value"`
			ValueFrom *struct {
				SecretKeyRef *struct {
					Name string `yaml:"name"`
					Key  string `yaml:"key"`
				} `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		EnvFrom      []yaml.Node `yaml:"envFrom"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			ReadOnly  bool   `yaml:"readOnly"`
		} `yaml:"volumeMounts"`
		StartupProbe   *probe `yaml:"startupProbe"`
		LivenessProbe  *probe `yaml:"livenessProbe"`
		ReadinessProbe *probe `yaml:"readinessProbe"`
		Resources      struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		SecurityContext securityContext `yaml:"securityContext"`
	}
	probe struct {
		HTTPGet *struct {
			Path string    `yaml:"path"`
			Port yaml.Node `yaml:"port"` // a number or a port name
		} `yaml:"httpGet"`
	}
	securityContext struct {
		RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
		RunAsUser                *int64 `yaml:"runAsUser"`
		ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		Capabilities             *struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
		SeccompProfile *struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	}
)

// decodeSpec decodes an object's spec into v.
func (o object) decodeSpec(t *testing.T, v any) {
	t.Helper()
	if err := o.Spec.Decode(v); err != nil {
		t.Fatalf("%s: %s spec: %v", o.file, o.Kind, err)
	}
}

// readObjects parses every document of the YAML files given.
func readObjects(t *testing.T, files ...string) []object {
	t.Helper()
	var out []object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var o object
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.Kind == "" {
				t.Fatalf("%s: a document without kind", f)
			}
			o.file = f
			out = append(out, o)
		}
	}
	return out
}

// kustomization is kubernetes/kustomization.yaml.
type kustomization struct {
	Resources []string `yaml:"resources"`
	Images    []struct {
		Name string `yaml:"name"`
	} `yaml:"images"`
}

// cluster is the Kubernetes base: what kustomization.yaml includes, and the
// example Secret beside it.
type cluster struct {
	kust    kustomization
	objects map[string]object // by kind
	secret  object
}

func readCluster(t *testing.T) cluster {
	t.Helper()
	data, err := os.ReadFile("kubernetes/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c cluster
	if err := yaml.Unmarshal(data, &c.kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	var files []string
	for _, r := range c.kust.Resources {
		files = append(files, filepath.Join("kubernetes", r))
	}
	c.objects = map[string]object{}
	for _, o := range readObjects(t, files...) {
		if _, dup := c.objects[o.Kind]; dup {
			t.Errorf("%s: a second %s", o.file, o.Kind)
		}
		c.objects[o.Kind] = o
	}
	secrets := readObjects(t, "kubernetes/secret.example.yaml")
	if len(secrets) != 1 || secrets[0].Kind != "Secret" {
		t.Fatalf("secret.example.yaml: want one Secret, got %d objects", len(secrets))
	}
	c.secret = secrets[0]
	return c
}

func (c cluster) get(t *testing.T, kind string) object {
	t.Helper()
	o, ok := c.objects[kind]
	if !ok {
		t.Fatalf("kustomization.yaml includes no %s", kind)
	}
	return o
}

// baseKinds are the kinds of the objects the base holds, one of each, sorted.
var baseKinds = []string{"Deployment", "HorizontalPodAutoscaler", "Job", "NetworkPolicy", "PodDisruptionBudget", "Service"}

// TestKustomizationListsEveryManifest checks that the base includes every
// manifest in its directory but the example Secret, and nothing else.
func TestKustomizationListsEveryManifest(t *testing.T) {
	c := readCluster(t)
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		name := filepath.Base(f)
		if name != "kustomization.yaml" && !strings.HasSuffix(name, ".example.yaml") {
			want = append(want, name)
		}
	}
	got := slices.Sorted(slices.Values(c.kust.Resources))
	if !slices.Equal(got, want) {
		t.Errorf("kustomization resources: got %v, want %v", got, want)
	}
	for _, kind := range baseKinds {
		c.get(t, kind)
	}
}

// TestKustomizeBuild renders the base with kubectl, where it is installed,
// and checks that the image is substituted and every object is there.
func TestKustomizeBuild(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed; the manifests are still checked one by one")
	}
	out, err := exec.Command(kubectl, "kustomize", "kubernetes").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	var kinds []string
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o struct {
			Kind string `yaml:"kind"`
		}
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, o.Kind)
	}
	slices.Sort(kinds)
	if !slices.Equal(kinds, baseKinds) {
		t.Errorf("kustomize output kinds: got %v, want %v", kinds, baseKinds)
	}
	if bytes.Contains(out, []byte("image: signin-tokens\n")) {
		t.Error("kustomize output still has the bare image name; the images entry does not apply")
	}
}

// TestWorkloads checks the Deployment and the migration Job against the
// binary: subcommands, variables, ports, probes, Secret keys, resources and
// the security settings a read-only, non-root container needs.
func TestWorkloads(t *testing.T) {
	bin := server(t)
	c := readCluster(t)
	secretKeys := c.secret.StringData
	image := ""
	if len(c.kust.Images) == 1 {
		image = c.kust.Images[0].Name
	}

	for _, kind := range []string{"Deployment", "Job"} {
		o := c.get(t, kind)
		var spec workloadSpec
		o.decodeSpec(t, &spec)
		pod := spec.Template.Spec
		if kind == "Deployment" {
			if spec.Replicas == nil || *spec.Replicas != 3 {
				t.Errorf("Deployment replicas: got %v, want 3", spec.Replicas)
			}
			if !matches(spec.Selector.MatchLabels, spec.Template.Metadata.Labels) {
				t.Errorf("Deployment selector %v does not match its pods' labels %v", spec.Selector.MatchLabels, spec.Template.Metadata.Labels)
			}
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken: want false; the server never calls the Kubernetes API", kind)
		}
		if len(pod.Containers) != 1 {
			t.Fatalf("%s: got %d containers, want 1", kind, len(pod.Containers))
		}
		ctr := pod.Containers[0]
		where := kind + " container " + ctr.Name

		if ctr.Image != image {
			t.Errorf("%s: image %q; want %q, the name kustomization.yaml substitutes", where, ctr.Image, image)
		}
		if len(ctr.Args) == 0 || !slices.Contains(bin.subcommands, ctr.Args[0]) {
			t.Errorf("%s: args %v; want a subcommand of the binary, one of %v", where, ctr.Args, bin.subcommands)
		}
		if len(ctr.EnvFrom) > 0 {
			t.Errorf("%s: envFrom hides which variables are set; list them under env", where)
		}
		env := map[string]string{}
		for _, e := range ctr.Env {
			if !bin.envVars[e.Name] {
				t.Errorf("%s: sets %s, which the server does not read (server -h lists what it reads)", where, e.Name)
			}
			if _, dup := env[e.Name]; dup {
				t.Errorf("%s: sets %s twice", where, e.Name)
			}
			env[e.Name] = e.Value
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				ref := e.ValueFrom.SecretKeyRef
				if _, ok := secretKeys[ref.Key]; ref.Name != c.secret.Metadata.Name || !ok {
					t.Errorf("%s: %s reads key %q of Secret %q; secret.example.yaml has no such key", where, e.Name, ref.Key, ref.Name)
				}
			}
		}
		if _, ok := env["DATABASE_URL"]; !ok {
			t.Errorf("%s: no DATABASE_URL; the base runs on PostgreSQL", where)
		}
		checkSecurity(t, where, pod.SecurityContext, ctr.SecurityContext)
		for _, res := range []string{"cpu", "memory"} {
			if ctr.Resources.Requests[res] == "" {
				t.Errorf("%s: no %s request", where, res)
			}
		}
		if ctr.Resources.Limits["memory"] == "" {
			t.Errorf("%s: no memory limit", where)
		}
		if kind == "Job" {
			continue
		}

		// The server: keys from the Secret, a port, probes.
		for _, name := range []string{"SECRET_KEYS", "SIGNING_KEY_FILE"} {
			if _, ok := env[name]; !ok {
				t.Errorf("%s: no %s; without it the server writes a generated key to DATA_DIR, which a read-only filesystem refuses", where, name)
			}
		}
		checkSigningKeyMount(t, where, env["SIGNING_KEY_FILE"], ctr, pod, c.secret)
		addr := bin.defaultAddr
		if v, ok := env["HTTP_ADDR"]; ok {
			addr = v
		}
		listen := port(t, addr)
		portByName := map[string]int{}
		for _, p := range ctr.Ports {
			portByName[p.Name] = p.ContainerPort
		}
		if len(ctr.Ports) != 1 || ctr.Ports[0].ContainerPort != listen {
			t.Errorf("%s: container ports %+v; want one, %d, where HTTP_ADDR %q listens", where, ctr.Ports, listen, addr)
		}
		probes := map[string]*probe{"startup": ctr.StartupProbe, "liveness": ctr.LivenessProbe, "readiness": ctr.ReadinessProbe}
		wantPath := map[string]string{"startup": "/healthz", "liveness": "/healthz", "readiness": "/readyz"}
		for name, p := range probes {
			if p == nil || p.HTTPGet == nil {
				t.Errorf("%s: no HTTP %s probe", where, name)
				continue
			}
			if p.HTTPGet.Path != wantPath[name] {
				t.Errorf("%s: %s probe path %q, want %s", where, name, p.HTTPGet.Path, wantPath[name])
			}
			if got := resolvePort(p.HTTPGet.Port, portByName); got != listen {
				t.Errorf("%s: %s probe port %q is %d, want %d where the server listens", where, name, p.HTTPGet.Port.Value, got, listen)
			}
			servesPath(t, p.HTTPGet.Path)
		}
		checkAroundDeployment(t, c, spec.Template.Metadata.Labels, portByName, listen)
	}
}

// matches reports whether labels carries every pair of sel, and sel is not empty.
func matches(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// resolvePort gives the number a probe or Service port names.
func resolvePort(n yaml.Node, byName map[string]int) int {
	if v, err := strconv.Atoi(n.Value); err == nil {
		return v
	}
	return byName[n.Value]
}

func checkSecurity(t *testing.T, where string, pod, ctr securityContext) {
	t.Helper()
	isTrue := func(b ...*bool) bool {
		for _, v := range b {
			if v != nil {
				return *v
			}
		}
		return false
	}
	if !isTrue(ctr.RunAsNonRoot, pod.RunAsNonRoot) {
		t.Errorf("%s: runAsNonRoot is not true", where)
	}
	u := ctr.RunAsUser
	if u == nil {
		u = pod.RunAsUser
	}
	if u != nil && *u == 0 {
		t.Errorf("%s: runs as user 0", where)
	}
	if !isTrue(ctr.ReadOnlyRootFilesystem) {
		t.Errorf("%s: readOnlyRootFilesystem is not true", where)
	}
	if ctr.AllowPrivilegeEscalation == nil || *ctr.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", where)
	}
	if ctr.Capabilities == nil || !slices.Equal(ctr.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("%s: capabilities do not drop ALL", where)
	}
	seccomp := ctr.SeccompProfile
	if seccomp == nil {
		seccomp = pod.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != "RuntimeDefault" {
		t.Errorf("%s: seccompProfile is not RuntimeDefault", where)
	}
}

// checkSigningKeyMount checks that SIGNING_KEY_FILE names a file the pod
// mounts from the Secret's signing key.
func checkSigningKeyMount(t *testing.T, where, file string, ctr container, pod podSpec, secret object) {
	t.Helper()
	for _, m := range ctr.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		if !m.ReadOnly {
			t.Errorf("%s: the signing key mount %s is not readOnly", where, m.MountPath)
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			if v.Secret.SecretName != secret.Metadata.Name {
				t.Errorf("%s: volume %s mounts Secret %q, want %q", where, v.Name, v.Secret.SecretName, secret.Metadata.Name)
			}
			for _, it := range v.Secret.Items {
				if it.Path == rel {
					if pem := secret.StringData[it.Key]; !strings.Contains(pem, "BEGIN PRIVATE KEY") {
						t.Errorf("%s: SIGNING_KEY_FILE is Secret key %q, which secret.example.yaml does not show as a PEM private key", where, it.Key)
					}
					return
				}
			}
		}
	}
	t.Errorf("%s: SIGNING_KEY_FILE %q is not a file of a Secret volume the container mounts", where, file)
}

// checkAroundDeployment checks the objects that point at the server's pods.
func checkAroundDeployment(t *testing.T, c cluster, podLabels map[string]string, portByName map[string]int, listen int) {
	t.Helper()
	var job workloadSpec
	c.get(t, "Job").decodeSpec(t, &job)

	var svc struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Port       int       `yaml:"port"`
			TargetPort yaml.Node `yaml:"targetPort"`
		} `yaml:"ports"`
	}
	c.get(t, "Service").decodeSpec(t, &svc)
	if !matches(svc.Selector, podLabels) || matches(svc.Selector, job.Template.Metadata.Labels) {
		t.Errorf("Service selector %v: want it to select the server's pods %v and not the migration Job's %v",
			svc.Selector, podLabels, job.Template.Metadata.Labels)
	}
	for _, p := range svc.Ports {
		if got := resolvePort(p.TargetPort, portByName); got != listen {
			t.Errorf("Service port %d targets %q = %d, want %d", p.Port, p.TargetPort.Value, got, listen)
		}
	}

	var pdb struct {
		Selector       selector `yaml:"selector"`
		MinAvailable   *int     `yaml:"minAvailable"`
		MaxUnavailable *int     `yaml:"maxUnavailable"`
	}
	c.get(t, "PodDisruptionBudget").decodeSpec(t, &pdb)
	if !matches(pdb.Selector.MatchLabels, podLabels) || matches(pdb.Selector.MatchLabels, job.Template.Metadata.Labels) {
		t.Errorf("PodDisruptionBudget selector %v: want the server's pods only", pdb.Selector.MatchLabels)
	}
	if pdb.MinAvailable == nil && pdb.MaxUnavailable == nil {
		t.Error("PodDisruptionBudget sets neither minAvailable nor maxUnavailable")
	}

	var hpa struct {
		ScaleTargetRef struct {
			Kind string `yaml:"kind"`
			Name string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicas int `yaml:"minReplicas"`
		MaxReplicas int `yaml:"maxReplicas"`
	}
	c.get(t, "HorizontalPodAutoscaler").decodeSpec(t, &hpa)
	dep := c.get(t, "Deployment")
	if hpa.ScaleTargetRef.Kind != "Deployment" || hpa.ScaleTargetRef.Name != dep.Metadata.Name {
		t.Errorf("HorizontalPodAutoscaler targets %s %s, want Deployment %s", hpa.ScaleTargetRef.Kind, hpa.ScaleTargetRef.Name, dep.Metadata.Name)
	}
	if hpa.MinReplicas < 3 || hpa.MaxReplicas < hpa.MinReplicas {
		t.Errorf("HorizontalPodAutoscaler replicas %d..%d; want at least 3 and min <= max", hpa.MinReplicas, hpa.MaxReplicas)
	}

	var np struct {
		PodSelector selector `yaml:"podSelector"`
		PolicyTypes []string `yaml:"policyTypes"`
		Ingress     []struct {
			Ports []struct {
				Port yaml.Node `yaml:"port"`
			} `yaml:"ports"`
		} `yaml:"ingress"`
	}
	c.get(t, "NetworkPolicy").decodeSpec(t, &np)
	if !matches(np.PodSelector.MatchLabels, podLabels) || !matches(np.PodSelector.MatchLabels, job.Template.Metadata.Labels) {
		t.Errorf("NetworkPolicy podSelector %v: want it to cover the server and the migration Job", np.PodSelector.MatchLabels)
	}
	if !slices.Contains(np.PolicyTypes, "Ingress") || !slices.Contains(np.PolicyTypes, "Egress") {
		t.Errorf("NetworkPolicy policyTypes %v, want Ingress and Egress", np.PolicyTypes)
	}
	for _, rule := range np.Ingress {
		for _, p := range rule.Ports {
			if got := resolvePort(p.Port, portByName); got != listen {
				t.Errorf("NetworkPolicy admits port %q = %d, but the server listens on %d", p.Port.Value, got, listen)
			}
		}
	}
	if len(np.Ingress) == 0 {
		t.Error("NetworkPolicy admits nothing; callers and Prometheus need the server's port")
	}
}

// compose is the part of docker-compose.yml the checks read.
type compose struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       yaml.Node         `yaml:"build"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		EnvFile     []string          `yaml:"env_file"`
		Ports       []string          `yaml:"ports"`
		ReadOnly    bool              `yaml:"read_only"`
		Volumes     []string          `yaml:"volumes"`
		Secrets     []yaml.Node       `yaml:"secrets"`
		DependsOn   map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
		Healthcheck *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
	Secrets map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
	Volumes map[string]any `yaml:"volumes"`
}

// TestCompose checks docker-compose.yml against the binary.
func TestCompose(t *testing.T) {
	bin := server(t)
	data, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}

	pg, ok := c.Services["postgres"]
	if !ok || !strings.HasPrefix(pg.Image, "postgres:15") {
		t.Fatalf("compose: want a postgres service on postgres:15, got %q", pg.Image)
	}
	if pg.Healthcheck == nil || len(pg.Healthcheck.Test) < 2 || pg.Healthcheck.Test[1] != "pg_isready" {
		t.Error("compose postgres: want a pg_isready health check")
	}
	if len(pg.Volumes) == 0 {
		t.Error("compose postgres: want its data on a named volume")
	} else if name, _, _ := strings.Cut(pg.Volumes[0], ":"); !keyIn(c.Volumes, name) {
		t.Errorf("compose postgres: volume %q is not a named volume of the file", name)
	}

	var serverName string
	for name, s := range c.Services {
		if name == "postgres" {
			continue
		}
		where := "compose service " + name
		if len(s.Command) == 0 || !slices.Contains(bin.subcommands, s.Command[0]) {
			t.Errorf("%s: command %v; want a subcommand of the binary, one of %v", where, s.Command, bin.subcommands)
			continue
		}
		for v := range s.Environment {
			if !bin.envVars[v] {
				t.Errorf("%s: sets %s, which the server does not read", where, v)
			}
		}
		for _, f := range s.EnvFile {
			checkEnvFile(t, where, f+".example", bin)
		}
		if !s.ReadOnly {
			t.Errorf("%s: read_only is not true", where)
		}
		if s.DependsOn["postgres"].Condition != "service_healthy" {
			t.Errorf("%s: want depends_on postgres condition service_healthy", where)
		}
		if s.Command[0] == "serve" {
			serverName = name
		}
	}
	srv, ok := c.Services[serverName]
	if !ok {
		t.Fatal("compose: no service runs serve")
	}
	where := "compose service " + serverName
	if cmd := c.Services["migrate"].Command; len(cmd) == 0 || cmd[0] != "migrate" {
		t.Error("compose: want a one-shot migrate service running the migrate subcommand")
	}
	if srv.DependsOn["migrate"].Condition != "service_completed_successfully" {
		t.Errorf("%s: want depends_on migrate condition service_completed_successfully", where)
	}

	addr := bin.defaultAddr
	if v, ok := srv.Environment["HTTP_ADDR"]; ok {
		addr = v
	}
	listen := port(t, addr)
	if len(srv.Ports) != 1 || !strings.HasSuffix(srv.Ports[0], ":"+strconv.Itoa(listen)) {
		t.Errorf("%s: ports %v; want one mapping to %d, where HTTP_ADDR %q listens", where, srv.Ports, listen, addr)
	}

	// Keys from files: SIGNING_KEY_FILE is a mounted secret.
	keyFile := srv.Environment["SIGNING_KEY_FILE"]
	target, ok := strings.CutPrefix(keyFile, "/run/secrets/")
	if !ok {
		t.Errorf("%s: SIGNING_KEY_FILE %q; want a file under /run/secrets", where, keyFile)
	}
	mounted := false
	for _, n := range srv.Secrets {
		var long struct {
			Source string `yaml:"source"`
			Target string `yaml:"target"`
		}
		if n.Kind == yaml.ScalarNode {
			long.Source, long.Target = n.Value, n.Value
		} else if err := n.Decode(&long); err != nil {
			t.Fatal(err)
		}
		if long.Target == target {
			if _, ok := c.Secrets[long.Source]; ok {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("%s: SIGNING_KEY_FILE %q is not one of its secrets", where, keyFile)
	}

	// The health check is the binary's own, in exec form: the image has no shell.
	hc := srv.Healthcheck
	if hc == nil || len(hc.Test) < 3 || hc.Test[0] != "CMD" || hc.Test[1] != "/server" || hc.Test[2] != "healthcheck" {
		t.Fatalf("%s: health check %v; want [CMD /server healthcheck ...]", where, hc)
	}
	checkHealthcheckCommand(t, bin, hc.Test[2:])
}

func keyIn(m map[string]any, k string) bool {
	_, ok := m[k]
	return ok
}

// checkEnvFile checks the variable names of an example env file.
func checkEnvFile(t *testing.T, where, file string, bin binary) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Errorf("%s: %v; ship an example of each env_file", where, err)
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "=")
		if !bin.envVars[name] {
			t.Errorf("%s: %s sets %s, which the server does not read", where, file, name)
		}
	}
}

// running is one server started from the built binary on SQLite in a
// temporary directory, for the checks that need a live answer.
var (
	runningOnce sync.Once
	runningAddr string
	runningDir  string
	runningErr  error
	liveProcess *exec.Cmd
)

func liveServer(t *testing.T) string {
	t.Helper()
	bin := server(t)
	runningOnce.Do(func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			runningErr = err
			return
		}
		runningAddr = ln.Addr().String()
		ln.Close()
		if runningDir, err = os.MkdirTemp("", "signin-tokens-deploy-data-"); err != nil {
			runningErr = err
			return
		}
		cmd := exec.Command(bin.path, "serve")
		cmd.Env = []string{"HTTP_ADDR=" + runningAddr, "DATA_DIR=" + runningDir}
		if err := cmd.Start(); err != nil {
			runningErr = err
			return
		}
		liveProcess = cmd // shared by the tests; TestMain stops it
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if resp, err := http.Get("http://" + runningAddr + "/healthz"); err == nil {
				resp.Body.Close()
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		runningErr = errors.New("the server did not answer /healthz within 20s")
	})
	if runningErr != nil {
		t.Fatal(runningErr)
	}
	return runningAddr
}

func TestMain(m *testing.M) {
	code := m.Run()
	if liveProcess != nil {
		liveProcess.Process.Kill()
		liveProcess.Wait()
	}
	if built.path != "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
	if runningDir != "" {
		os.RemoveAll(runningDir)
	}
	os.Exit(code)
}

// servesPath checks that the server answers 200 on path.
func servesPath(t *testing.T, path string) {
	t.Helper()
	addr := liveServer(t)
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET %s on the server: %s, want 200", path, resp.Status)
	}
}

// checkHealthcheckCommand runs the health check's arguments with the built
// binary against the live server: it must pass.
func checkHealthcheckCommand(t *testing.T, bin binary, args []string) {
	t.Helper()
	addr := liveServer(t)
	cmd := exec.Command(bin.path, args...)
	cmd.Env = []string{"HTTP_ADDR=" + addr}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("server %s against a running server: %v\n%s", strings.Join(args, " "), err, out)
	}
}
