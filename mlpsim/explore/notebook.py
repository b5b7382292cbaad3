"""The seed notebook, cell by cell, beside what does the same in mlpsim.

The notebook (Wolfram Language) is the project's origin (``shared/seed/``); its
cells are kept here verbatim so that the report can show each one next to the
mlpsim command or API call that does the same, and the figure it made.
"""

#: (Wolfram cell, what it does, the mlpsim equivalent, the seed study's figure or None)
CELLS = [
    ("piecewise=Piecewise[{{0,#<-2},{1,#<-1},{0,#<0},{1,#<2}}]&;SeedRandom[23049829048];"
     "trainingx=RandomReal[{-3,3},5000];trainingy=piecewise/@trainingx;",
     "The target (1 on [-2, -1) and [0, 2), else 0) and 5000 training inputs drawn uniformly on [-3, 3].",
     'config: [data] target = "piecewise", n = 5000, x_range = [-3.0, 3.0], seed = 23049829048\n'
     "python: x, y = mlpsim.load_run(run_dir).data()", None),
    ("TrainPiecewise[net_,seed_Integer]:=Module[{res,checkpoints={},initialNet},initialNet=NetInitialize[net,"
     "RandomSeeding->seed];res=NetTrain[initialNet,trainingx->trainingy,All,TrainingProgressFunction->"
     "{(AppendTo[checkpoints,#Net]&),\"Interval\"->Quantity[10,\"Rounds\"]},MaxTrainingRounds->15000,"
     "BatchSize->5000,RandomSeeding->seed];{res,Prepend[checkpoints,initialNet]}]",
     "Full-batch training for 15000 rounds, keeping the initial net and every 10th.",
     "config: [train] steps = 15000, checkpoint_every = 10 (Adam, lr 0.001, the notebook's bias correction)\n"
     "command: mlpsim train --preset seed --out runs/seed", None),
    ("numInstances=5;architecture={8,8,8};\n"
     "RRnet[lws_List]:=NetChain[Join[Riffle[LinearLayer/@lws,Ramp],{Ramp,LinearLayer[]}],\"Input\"->\"Real\","
     "\"Output\"->\"Real\"]",
     "Five instances of a 1-8-8-8-1 ReLU network.",
     "config: [model] widths = [1, 8, 8, 8, 1], activation = \"relu\"; [train] instances = 5\n"
     "python: net = mlpsim.MLP([1, 8, 8, 8, 1], activation=\"relu\")", None),
    ("allResults=Table[(Echo[\"Training instance \",i];TrainPiecewise[RRnet[architecture],123456*i]),"
     "{i,numInstances}];",
     "Train every instance (in the notebook, one after the other; the kernel aborted).",
     "command: mlpsim study seed --out out/seed   (20 instances, trained together, reused once trained)", None),
    ("allCheckpoints=allResults[[All,2]];FlattenWeights[net_]:=...;allWeights=Map[FlattenWeights,allCheckpoints,{2}];"
     "Print[\"Weight dimensions: \",Dimensions[allWeights]]",
     "All weights of all checkpoints as one array: {5, 1501, 169}.",
     "python: run.params   # (instances, 1501, 169), memory-mapped; run.net.layout_table() names each block", None),
    ("Histogram/@Take[allWeights[[1]],{1,-1,100}]",
     "A histogram of the 169 values at every 100th checkpoint.",
     "figure: fig1_histograms (mlpsim study seed)", "fig1_histograms.png"),
    ("ListDensityPlot[BinCounts[#,{-5,5,.25}]&/@allWeights[[1]]]",
     "Bin counts on [-5, 5) in steps of 0.25, checkpoints going up the page.",
     "python: analysis.histograms(run.params, analysis.select(run.net, \"all\"))   # also counts what falls outside\n"
     "figure: fig2_density", "fig2_density.png"),
    ("ListPlot3D[BinCounts[#,{-5,5,.25}]&/@allWeights[[1]]]\n"
     "ListPlot3D[...,PlotRange->All,ScalingFunctions->{Identity,Identity,\"Log\"}]",
     "The same matrix as a surface, with a linear and a logarithmic height.",
     "figure: fig3_surface", "fig3_surface.png"),
    ("ListLinePlot[Variance/@allWeights[[1]]]\nListLinePlot[(Variance/@#)&/@allWeights]",
     "The variance of the 169 values over training, for one instance and for all.",
     "python: analysis.moments(run.params, idx)[\"var\"]   # ddof = 1, as Wolfram's Variance\n"
     "figure: fig4_variance", "fig4_variance.png"),
    ("General claim: as the network trains, the distribution of weight values broadens",
     "The claim the notebook ends with.",
     "python: mlpsim.claims.evaluate(\"broadening\", run), and \"longer_tails\" for the shape\n"
     "command: mlpsim verdict broadening --run RUN_DIR   (judged per weight matrix, with real nulls)",
     "fig5_per_layer.png"),
    ("Microscopically, we could study correlations between weight values... could be that correlations "
     "are exponentially damped.... or maybe not",
     "An investigation it asks for.",
     "command: mlpsim study correlations   (claim correlation_decay)", None),
    ("Look at MLPs of different widths and depths; look at larger single networks, vs. ensembles of networks",
     "Investigations it asks for.",
     "commands: mlpsim study width-depth; mlpsim study ensembles; mlpsim atlas (every factor, judged together)", None),
    ("Distribution of weights per layer as a function of training; individual weights vs. training rounds; "
     "normalizing by total norm of the weights",
     "Investigations it asks for.",
     "figures: fig5_per_layer, fig7_trajectories, fig6_normalized (mlpsim study seed)", "fig7_trajectories.png"),
    ("Take grid networks... Can one visually see training?",
     "An investigation it asks for.",
     "command: mlpsim study mesh; and this explorer (mlpsim explore --run RUN_DIR --out page.html)", None),
]
