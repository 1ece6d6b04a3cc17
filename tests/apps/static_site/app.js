console.log("static site");
