import{a as f}from"./chunk-PBVAQHLC.js";import{a as l}from"./chunk-SSZN3I5F.js";function m(n,t,i){c(n,f(a(t),a(i)))}function c(n,t){for(let i of t){let e=i.value.replace(/\n$/,"").split(`
`);if(i.added)n.appendChild(l("ins",{},e.map(o=>`+ ${o}
`).join("")));else if(i.removed)n.appendChild(l("del",{},e.map(o=>`- ${o}
`).join("")));else if(e.length>7){let o=e.slice(0,3).map(d=>`  ${d}
`).join(""),p=e.slice(-3).map(d=>`  ${d}
`).join("");n.appendChild(document.createTextNode(`${o}  … ${e.length-6} unchanged lines
${p}`))}else n.appendChild(document.createTextNode(e.map(o=>`  ${o}
`).join("")))}}function a(n){return n==null?"":typeof n=="object"?n:`${JSON.stringify(n)}
`}export{m as fillDiff};
