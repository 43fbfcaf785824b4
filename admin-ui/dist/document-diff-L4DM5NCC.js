import{b as r}from"./chunk-PBVAQHLC.js";import{a as t}from"./chunk-SSZN3I5F.js";function d(i,c){let a=r("before","after",i,c,"","",{context:3}),e=t("pre",{class:"diff"});for(let n of a.hunks){e.appendChild(t("span",{class:"hunk"},`@@ -${n.oldStart},${n.oldLines} +${n.newStart},${n.newLines} @@
`));for(let s of n.lines){let o=s.charAt(0),f=o==="+"?"ins":o==="-"?"del":"same";e.appendChild(t("span",{class:f},`${s}
`))}}return e}export{d as diffElement};
