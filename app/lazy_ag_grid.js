// Stands in for the dash-ag-grid bundle (window.dash_ag_grid) until a page renders a grid.
// The bundle is 1.3 MB of script that every page used to evaluate before Dash could start, although
// only the list pages draw a grid. Dash finds a component class as window[namespace][type], so this
// object stays in that place for good; the real bundle is loaded, once, when an AgGrid first renders
// or when Dash asks whether it is ready, and every later render draws the real class.
// SRC is filled in by app/dashboard.py with the bundle's fingerprinted URL.
(function () {
  var SRC = "__SRC__";
  var stub = {};
  var real = null;
  var loading = null;

  function load() {
    if (!loading) {
      loading = new Promise(function (resolve, reject) {
        var script = document.createElement("script");
        script.src = SRC;
        script.onload = function () {
          // The bundle replaced window.dash_ag_grid with itself: keep its exports, put the stand-in back.
          real = window.dash_ag_grid;
          window.dash_ag_grid = stub;
          Object.keys(real).forEach(function (name) {
            if (name !== "AgGrid") {
              stub[name] = real[name];
            }
          });
          resolve(real);
        };
        script.onerror = function () {
          reject(new Error("could not load " + SRC));
        };
        document.body.appendChild(script);
      });
    }
    return loading;
  }

  function AgGrid(props) {
    var state = window.React.useState(real);
    var lib = state[0];
    var setLib = state[1];
    window.React.useEffect(function () {
      if (!lib) {
        load().then(function (loaded) {
          setLib(function () { return loaded; });
        });
      }
    }, []);
    return lib ? window.React.createElement(lib.AgGrid, props) : null;
  }

  // Dash waits on this before it runs a callback that involves the grid, as it does for the real class.
  Object.defineProperty(AgGrid, "_dashprivate_isLazyComponentReady", {
    get: function () {
      if (real) {
        return real.AgGrid._dashprivate_isLazyComponentReady;
      }
      return load().then(function (loaded) {
        return loaded.AgGrid._dashprivate_isLazyComponentReady;
      });
    }
  });
  // Persistence settings Dash reads from the class (none before the bundle is in).
  ["defaultProps", "dashPersistence", "persistenceTransforms"].forEach(function (name) {
    Object.defineProperty(AgGrid, name, {
      get: function () { return real ? real.AgGrid[name] : undefined; }
    });
  });

  stub.AgGrid = AgGrid;
  window.dash_ag_grid = stub;
})();
