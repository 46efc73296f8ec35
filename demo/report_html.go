package demo

// reportHTML is the report's template. It loads nothing: styles inline, charts inline
// SVG, images data: URIs.
const reportHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>capfilt demo: CapFilt on a synthetic web</title>
<style>
body { font-family: sans-serif; margin: 2em; max-width: 80em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.up { background: #e3f5e1; } td.down { background: #fbe3e1; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.charts svg { margin: 0 0.5em 0.5em 0; border: 1px solid #eee; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.8em; }
.card { width: 15em; border: 1px solid #ccc; padding: 0.4em; font-size: 0.8em; }
.card img { width: 144px; height: 144px; image-rendering: pixelated; display: block; margin-bottom: 0.3em; }
.cap { padding: 0.2em 0.3em; margin: 0.2em 0; border-radius: 0.2em; }
.kept { background: #d7f2d2; } .rejected { background: #f7d4d0; }
.truth { color: #555; }
</style>
</head>
<body>
<h1>capfilt demo: CapFilt on a synthetic web</h1>
<p>Recipe <b>{{.Res.Recipe.Name}}</b>, seed(s) {{range .Res.Table.Seeds}}{{.}} {{end}}, {{printf "%.0f" .Res.Seconds}} s in all{{if .Res.Version}}, capfilt {{.Res.Version}}{{end}}.
Every number on this page was measured in this run; rerunning with the same seeds on the same machine gives the same table.</p>

<h2>Table 1 in miniature</h2>
<p>Each row pretrains a fresh tiny BLIP (ITC + ITM + LM) from the same initial weights, with the same recipe, on the annotated set plus
the web set as the row says: the web text as crawled (noisy web), with the captioner's nucleus captions added (+C), with the web
text the filter kept (+F), or both filtered (+C+F; beam: the captions written by beam search instead).
Each pretrained model is then finetuned on the annotated set, for captioning (LM) and for retrieval (ITC + ITM), with the same
recipe for every row, and evaluated on the held-out test set: TR@1 and IR@1 rank by ITM on the ITC top-{{.Res.Recipe.RetrievalK}},
BLEU-4 and CIDEr-D score the beam-search captions against the test references, attribute precision (attr-P) and coverage (attr-C)
score them against the pictures. The noisy-web model is also the model CapFilt's captioner and filter were finetuned from.
Scores ×100; mean over the seeds; green above, red below the noisy-web row.</p>
<table>
<tr><th>pretrain</th><th>C</th><th>F</th><th>samples</th>{{range .Columns}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr><td>{{.Name}}</td><td>{{.C}}</td><td>{{.F}}</td><td>{{.Samples}}</td>{{range .Cells}}<td class="{{.Class}}">{{.Value}}</td>{{end}}</tr>
{{end}}</table>
<pre>{{.Text}}</pre>

{{range .Seeds}}
<h2>Seed {{.Seed}}</h2>
<table>
<tr><th>pretrain</th><th>C</th><th>F</th><th>samples</th>{{range $.Columns}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr><td>{{.Name}}</td><td>{{.C}}</td><td>{{.F}}</td><td>{{.Samples}}</td>{{range .Cells}}<td class="{{.Class}}">{{.Value}}</td>{{end}}</tr>
{{end}}</table>
<h3>The filter on the injected noise</h3>
<table>
<tr><th>web caption kind</th><th>captions</th><th>rejected</th><th>share rejected</th></tr>
{{$f := .Filter}}{{range kinds}}{{$d := kindRow $f .}}<tr><td>{{.}}</td><td>{{$d.Total}}</td><td>{{$d.Rejected}}</td><td>{{recall $f .}}</td></tr>
{{end}}{{range $f.WrongRows}}<tr><td>&nbsp;&nbsp;wrong {{.Attribute}}</td><td>{{.Total}}</td><td>{{.Rejected}}</td><td>{{pct .Share}}</td></tr>
{{end}}</table>
<p>Precision {{f3 $f.Precision}}, recall {{f3 $f.Recall}}; noise left in the kept web text: {{pct $f.KeptNoise}}.</p>
<h3>Filter scores</h3>
<div class="charts">{{range .Histograms}}{{.}}{{end}}</div>
<h3>Loss curves of every training run</h3>
<div class="charts">{{range .Curves}}{{.}}{{end}}</div>
<h3>Gallery</h3>
<p>Web images with their web text and the captioner's nucleus caption, green where the filter kept it, red where it rejected it,
with its match probability. Hover over an image for the truth.</p>
<div class="gallery">
{{range .Gallery}}<div class="card" title="truth: {{.Kind}}{{if .Detail}} ({{.Detail}}){{end}}; the picture: {{.Clean}}">
<img src="{{dataURL .Image}}" alt="web image {{.Key}}">
<div class="cap {{keptClass .Web.Kept}}">web: {{.Web.Text}} <b>{{f2 .Web.ITM}}</b></div>
<div class="cap {{keptClass .Synthetic.Kept}}">synthetic: {{.Synthetic.Text}} <b>{{f2 .Synthetic.ITM}}</b></div>
<div class="truth">{{.Kind}}</div>
</div>
{{end}}</div>
{{end}}

<h2>Stage times</h2>
<table>
<tr><th>seed</th><th>stage</th><th>seconds</th></tr>
{{range .Res.Stages}}<tr><td>{{.Seed}}</td><td>{{.Name}}</td><td>{{printf "%.1f" .Seconds}}</td></tr>
{{end}}</table>

<h2>Recipe</h2>
<pre>{{.Recipe}}</pre>
</body>
</html>
`
