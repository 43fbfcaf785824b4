import{a}from"./chunk-UDKFQ3JK.js";export{a as default};
