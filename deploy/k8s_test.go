package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// objects is the output of a kustomize build, decoded into the Kubernetes
// API types.
type objects struct {
	namespaces   []corev1.Namespace
	configMaps   map[string]corev1.ConfigMap
	secrets      map[string]corev1.Secret
	services     map[string]corev1.Service
	deployments  map[string]appsv1.Deployment
	statefulSets map[string]appsv1.StatefulSet
	jobs         map[string]batchv1.Job
	pdbs         []policyv1.PodDisruptionBudget
	all          []metav1.Object
}

// build runs kustomize on dir, as kubectl apply -k does, and decodes every
// resource strictly (an unknown or misspelt field is an error) into its
// type.
func build(t *testing.T, dir string) *objects {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	o := &objects{configMaps: map[string]corev1.ConfigMap{}, secrets: map[string]corev1.Secret{},
		services: map[string]corev1.Service{}, deployments: map[string]appsv1.Deployment{},
		statefulSets: map[string]appsv1.StatefulSet{}, jobs: map[string]batchv1.Job{}}
	for _, r := range rm.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		id := r.GetKind() + "/" + r.GetName()
		var obj metav1.Object
		strict := func(into any) {
			if err := yaml.UnmarshalStrict(b, into); err != nil {
				t.Errorf("%s in %s: %v", id, dir, err)
			}
		}
		switch r.GetApiVersion() + " " + r.GetKind() {
		case "v1 Namespace":
			var x corev1.Namespace
			strict(&x)
			o.namespaces, obj = append(o.namespaces, x), &x
		case "v1 ConfigMap":
			var x corev1.ConfigMap
			strict(&x)
			o.configMaps[x.Name], obj = x, &x
		case "v1 Secret":
			var x corev1.Secret
			strict(&x)
			o.secrets[x.Name], obj = x, &x
		case "v1 Service":
			var x corev1.Service
			strict(&x)
			o.services[x.Name], obj = x, &x
		case "apps/v1 Deployment":
			var x appsv1.Deployment
			strict(&x)
			o.deployments[x.Name], obj = x, &x
		case "apps/v1 StatefulSet":
			var x appsv1.StatefulSet
			strict(&x)
			o.statefulSets[x.Name], obj = x, &x
		case "batch/v1 Job":
			var x batchv1.Job
			strict(&x)
			o.jobs[x.Name], obj = x, &x
		case "policy/v1 PodDisruptionBudget":
			var x policyv1.PodDisruptionBudget
			strict(&x)
			o.pdbs, obj = append(o.pdbs, x), &x
		default:
			t.Errorf("%s in %s: a kind this test does not know (%s)", id, dir, r.GetApiVersion())
			continue
		}
		o.all = append(o.all, obj)
	}
	return o
}

// configMap and secret find an object by the name the base gives it:
// generators add a content hash to the name.
func (o *objects) configMap(name string) (corev1.ConfigMap, bool) {
	for n, c := range o.configMaps {
		if n == name || strings.HasPrefix(n, name+"-") && len(n) == len(name)+11 {
			return c, true
		}
	}
	return corev1.ConfigMap{}, false
}

// podEnv is the environment a container gets: envFrom (each reference must
// exist in the build) and env.
func (o *objects) podEnv(t *testing.T, where string, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, ok := o.configMaps[from.ConfigMapRef.Name]
			if !ok {
				t.Errorf("%s: envFrom ConfigMap %q is not in the build", where, from.ConfigMapRef.Name)
			}
			for k, v := range cm.Data {
				env[k] = v
			}
		case from.SecretRef != nil:
			s, ok := o.secrets[from.SecretRef.Name]
			if !ok {
				t.Errorf("%s: envFrom Secret %q is not in the build", where, from.SecretRef.Name)
			}
			for k, v := range s.StringData {
				env[k] = v
			}
			for k, v := range s.Data {
				env[k] = string(v)
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			env[e.Name] = "from-" + e.Name
			continue
		}
		env[e.Name] = e.Value
	}
	return env
}

// containerPort resolves a probe's port (a name or a number).
func containerPort(c corev1.Container, p intstr.IntOrString) int {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return int(cp.ContainerPort)
		}
	}
	return 0
}

func hasPDB(o *objects, podLabels map[string]string) bool {
	for _, p := range o.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(podLabels)) {
			return p.Spec.MinAvailable != nil || p.Spec.MaxUnavailable != nil
		}
	}
	return false
}

func checkResources(t *testing.T, where string, c corev1.Container) {
	t.Helper()
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
		if req.IsZero() || lim.IsZero() {
			t.Errorf("%s: %s request %v, limit %v: both must be set", where, r, req.String(), lim.String())
		} else if req.Cmp(lim) > 0 {
			t.Errorf("%s: %s request %v above its limit %v", where, r, req.String(), lim.String())
		}
	}
}

// checkSeatd checks a build's seatd roles, the migration Job and the NATS
// StatefulSet. image is what every seatd container must run.
func checkSeatd(t *testing.T, dir string, o *objects, image string, workers int) {
	t.Helper()
	known := seatdSettings(t)
	for _, role := range []string{"ingress", "worker", "mailer", "webhooks"} {
		name := "seatd-" + role
		d, ok := o.deployments[name]
		if !ok {
			t.Errorf("%s: no Deployment %s", dir, name)
			continue
		}
		where := dir + " Deployment " + name
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: selector %v does not match its pods' labels %v", where, d.Spec.Selector, d.Spec.Template.Labels)
		}
		if !hasPDB(o, d.Spec.Template.Labels) {
			t.Errorf("%s: no PodDisruptionBudget covers its pods", where)
		}
		if want := map[string]int{"ingress": 2, "worker": workers, "mailer": 1, "webhooks": 1}[role]; d.Spec.Replicas == nil || int(*d.Spec.Replicas) != want {
			t.Errorf("%s: replicas %v, want %d", where, d.Spec.Replicas, want)
		}
		ps := d.Spec.Template.Spec
		if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
			t.Errorf("%s: pods may run as root", where)
		}
		if len(ps.Containers) != 1 {
			t.Fatalf("%s: %d containers", where, len(ps.Containers))
		}
		c := ps.Containers[0]
		if c.Image != image || strings.Join(c.Args, " ") != role {
			t.Errorf("%s: image %q args %v, want %q [%s]", where, c.Image, c.Args, image, role)
		}
		checkResources(t, where, c)
		env := o.podEnv(t, where, c)
		checkRoleEnv(t, known, roleEnv{where: where, role: role, env: env, probed: true})
		listen := env["SEATD_HEALTH_ADDR"]
		if role == "ingress" {
			listen = env["SEATD_HTTP_ADDR"]
		}
		for _, p := range []struct {
			what  string
			probe *corev1.Probe
			path  string
		}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("%s: no HTTP %s probe", where, p.what)
				continue
			}
			if p.probe.HTTPGet.Path != p.path {
				t.Errorf("%s: %s probe on %s, want %s", where, p.what, p.probe.HTTPGet.Path, p.path)
			}
			if port := containerPort(c, p.probe.HTTPGet.Port); listen == "" || port != listenPort(t, listen) {
				t.Errorf("%s: %s probe port %v is container port %d, but seatd listens on %q", where, p.what,
					p.probe.HTTPGet.Port.String(), port, listen)
			}
		}
		if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
			t.Errorf("%s: root filesystem not read-only", where)
		}
	}
	if svc, ok := o.services["seatd"]; !ok {
		t.Errorf("%s: no Service seatd", dir)
	} else if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(o.deployments["seatd-ingress"].Spec.Template.Labels)) {
		t.Errorf("%s: Service seatd does not select the ingress pods", dir)
	} else if c := o.deployments["seatd-ingress"].Spec.Template.Spec.Containers; len(c) == 1 && containerPort(c[0], svc.Spec.Ports[0].TargetPort) == 0 {
		t.Errorf("%s: Service seatd targets port %v the ingress does not have", dir, svc.Spec.Ports[0].TargetPort.String())
	}

	job, ok := o.jobs["seatd-migrate"]
	if !ok {
		t.Errorf("%s: no migration Job", dir)
	} else {
		c := job.Spec.Template.Spec.Containers[0]
		if c.Image != image || strings.Join(c.Args, " ") != "migrate" {
			t.Errorf("%s: migration Job runs %q %v", dir, c.Image, c.Args)
		}
		checkResources(t, dir+" Job seatd-migrate", c)
		checkRoleEnv(t, known, roleEnv{where: dir + " Job seatd-migrate", role: "migrate", env: o.podEnv(t, dir+" Job", c)})
	}

	ss, ok := o.statefulSets["nats"]
	if !ok {
		t.Fatalf("%s: no NATS StatefulSet", dir)
	}
	if ss.Spec.Replicas == nil || *ss.Spec.Replicas != 3 {
		t.Errorf("%s: NATS StatefulSet replicas %v, want 3", dir, ss.Spec.Replicas)
	}
	if !hasPDB(o, ss.Spec.Template.Labels) {
		t.Errorf("%s: no PodDisruptionBudget covers the NATS pods", dir)
	}
	if len(ss.Spec.VolumeClaimTemplates) == 0 {
		t.Errorf("%s: NATS has no persistent volume: a restarted node would lose its replicas", dir)
	}
	headless, ok := o.services[ss.Spec.ServiceName]
	if !ok || headless.Spec.ClusterIP != "None" || !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("%s: NATS's governing Service %q must be headless and publish not-ready addresses (peers find each other before they are ready)", dir, ss.Spec.ServiceName)
	}
	nc := ss.Spec.Template.Spec.Containers[0]
	checkResources(t, dir+" StatefulSet nats", nc)
	if nc.ReadinessProbe == nil || nc.LivenessProbe == nil {
		t.Errorf("%s: NATS has no readiness or liveness probe", dir)
	}
	var confMap string
	for _, v := range ss.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			confMap = v.ConfigMap.Name
		}
	}
	cm, ok := o.configMaps[confMap]
	if !ok || cm.Data["nats.conf"] == "" {
		t.Fatalf("%s: NATS mounts ConfigMap %q, which is not in the build or has no nats.conf", dir, confMap)
	}
	// The config NATS runs is the one the build carries: parse that.
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(cm.Data["nats.conf"]), 0o644); err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for i := range 3 {
		hosts = append(hosts, fmt.Sprintf("%s-%d.%s", ss.Name, i, ss.Spec.ServiceName))
	}
	opts := checkNATSConf(t, path, ss.Name+"-0", hosts)
	if port := containerPort(nc, intstr.FromString("cluster")); port != opts.Cluster.Port {
		t.Errorf("%s: NATS cluster port %d in the config, %d in the pod", dir, opts.Cluster.Port, port)
	}
	// seatd's NATS_URL names the three pods' client ports.
	seatdCM, _ := o.configMap("seatd")
	var want []string
	for _, h := range hosts {
		want = append(want, fmt.Sprintf("nats://%s:%d", h, opts.Port))
	}
	if got := seatdCM.Data["NATS_URL"]; got != strings.Join(want, ",") {
		t.Errorf("%s: NATS_URL %q, want %q", dir, got, strings.Join(want, ","))
	}
}

// TestKubernetesBase builds the base and checks every object in it.
func TestKubernetesBase(t *testing.T) {
	o := build(t, "k8s/base")
	checkSeatd(t, "k8s/base", o, "seatd", 2)
}

// TestKubernetesExampleOverlay builds the example overlay: its namespace
// on every object, its image on every seatd container, its settings and
// its Secret (generated, so its hashed name must reach every envFrom).
func TestKubernetesExampleOverlay(t *testing.T) {
	const dir = "k8s/overlays/example"
	o := build(t, dir)
	checkSeatd(t, dir, o, "registry.example.com/seatd:v1.0.0", 3)
	for _, obj := range o.all {
		if _, isNS := obj.(*corev1.Namespace); !isNS && obj.GetNamespace() != "seatd" {
			t.Errorf("%s: %s is in namespace %q, want seatd", dir, obj.GetName(), obj.GetNamespace())
		}
	}
	if len(o.namespaces) != 1 {
		t.Errorf("%s: %d Namespaces", dir, len(o.namespaces))
	}
	cm, _ := o.configMap("seatd")
	if cm.Data["SEATD_PUBLIC_URL"] != "https://seats.acme.example" || cm.Data["SEATD_NATS_REPLICAS"] != "3" {
		t.Errorf("%s: seatd ConfigMap %v: the overlay's URL merged over the base's settings", dir, cm.Data)
	}
	overlaySecrets := readEnvFile(t, dir+"/secrets.env.example")
	env := o.podEnv(t, dir, o.deployments["seatd-worker"].Spec.Template.Spec.Containers[0])
	for k, v := range overlaySecrets {
		if env[k] != v {
			t.Errorf("%s: the worker gets %s=%q, not the overlay's secret", dir, k, env[k])
		}
	}
}
